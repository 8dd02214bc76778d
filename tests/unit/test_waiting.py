"""wait_until: the one poll loop."""

import time

from availlab.waiting import wait_until


def test_returns_the_first_truthy_value():
    seen = iter([None, 0, "", {"exited": True}])
    assert wait_until(lambda: next(seen), 5, 0.001) == {"exited": True}


def test_gives_up_at_the_deadline_after_a_last_look():
    calls = []
    t0 = time.monotonic()
    assert wait_until(lambda: calls.append(time.monotonic()), 0.05, 0.01) is None
    assert 0.05 <= time.monotonic() - t0 < 1 and calls[-1] - t0 >= 0.05


def test_a_zero_or_past_timeout_still_probes_once():
    assert wait_until(lambda: 7, 0) == 7 and wait_until(lambda: 7, -1) == 7
