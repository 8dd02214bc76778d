"""Progress lines for long work (image build, lab up, VM boot), on stderr so stdout stays data."""

from __future__ import annotations

import sys
import time

_T0 = time.monotonic()
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def step(message: str) -> None:
    if not _quiet:
        print(f"[availlab {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)
