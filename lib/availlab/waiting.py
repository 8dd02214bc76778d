"""One way to wait for something: probe until it holds or a deadline passes.

Every wait in availlab is bounded (a lab never hangs a run), and each says what it waited for
when it gives up; this helper is the loop, the caller says what a timeout means.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout_s: float, interval_s: float = 0.1) -> T | None:
    """probe() until it returns something truthy, which is returned; None once `timeout_s` has
    passed. The probe runs at least once, and once more at the deadline, so a slow probe or a
    short timeout still gets a last look. Exceptions from the probe propagate."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval_s, left))
