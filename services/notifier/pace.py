"""How many notifications this instance may hold claimed in its queue, and when one is too late to start.

A notification stored already claimed costs SecantusDB one write fewer than one claimed later (each write of a
notification rewrites its five index entries: milliseconds). So the queue holds what this instance will surely
start while its lease runs: at least what `concurrency` deliveries, each taking the whole HTTP timeout, start
within a lease (the rule of the lease setting), and, while deliveries run faster than that, what the pace of the
last half minute starts within half a lease, up to `notifier_queue_max`. A claim whose lease would end before its
delivery could finish is never started (`start_margin`): should the pace drop, the tail of the queue is left to
expire and be claimed again, as after a crash, and is never sent twice.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta

PACE_WINDOW_SECONDS = 30.0  # the pace is the deliveries started over the last this-many seconds


class DeliveryPace:
    """Deliveries started per second over the last `window` seconds (a monotonic clock, injectable for tests)."""

    def __init__(self, window: float = PACE_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.clock = clock
        self._starts: deque[float] = deque()

    def started(self) -> None:
        self._starts.append(self.clock())

    def per_second(self) -> float:
        now = self.clock()
        while self._starts and self._starts[0] < now - self.window:
            self._starts.popleft()
        if len(self._starts) < 2:
            return 0.0
        return len(self._starts) / max(now - self._starts[0], 1.0)


def start_margin(lease_seconds: float, delivery_timeout_seconds: float) -> timedelta:
    """How much of its lease a claimed notification must have left to be started: time for its delivery to end
    (the longest channel timeout), but never more than a quarter of the lease, nor less than a second."""
    return timedelta(seconds=max(1.0, min(delivery_timeout_seconds, lease_seconds / 4)))


def queue_bound(*, concurrency: int, claim_batch: int, lease_seconds: float, delivery_timeout_seconds: float,
                per_second: float, queue_max: int) -> int:
    """How many claimed notifications the queue may hold (see the module's text)."""
    surely = max(claim_batch, int(concurrency * lease_seconds / delivery_timeout_seconds))
    margin = start_margin(lease_seconds, delivery_timeout_seconds).total_seconds()
    paced = int(per_second * max(0.0, lease_seconds - margin) / 2)
    return max(surely, min(queue_max, paced))
