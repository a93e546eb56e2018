"""Hand-backs wait at least as long as asked: RQ's scheduler keeps whole seconds."""

from __future__ import annotations

import time

import pytest

from workers.requeue import due_time


@pytest.mark.parametrize("delay", [0.01, 0.5, 1.0, 1.05, 7.3])
def test_due_time_is_never_earlier_than_the_delay(delay: float) -> None:
    before = time.time()
    due = due_time(delay).timestamp()
    assert due == int(due)  # what RQ's registry stores, so nothing is truncated later
    assert before + delay <= due < time.time() + delay + 1
