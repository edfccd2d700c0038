"""Per-key token buckets: how much one API key may send to one replica, and for how long it must wait.

In memory and per replica (N replicas let a key through at N times the rate): the limit protects a
replica's CPU and Kafka from one runaway client, it is not an accounting quota. Pure: no I/O, the
clock is injected.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second per key, up to `burst`. At most `max_keys` keys are remembered: the least
    recently seen is forgotten first (a forgotten key starts again with a full bucket, which is what an idle
    key would have had anyway once it has been idle for burst/rate seconds)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst >= 1 and max_keys >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens: 0.0 when granted, else the seconds until they would be (nothing is taken then).

        A cost above `burst` is charged as `burst`: otherwise a request the size limits allow could never pass."""
        cost = min(max(float(cost), 0.0), self.burst)
        now = self.clock()
        tokens, at = self._state.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens >= cost:
            tokens -= cost
            wait = 0.0
        else:
            wait = (cost - tokens) / self.rate
        self._state[key] = (tokens, now)  # re-inserted last: the dict's order is the LRU order
        while len(self._state) > self.max_keys:
            self._state.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._state)


def retry_after_seconds(wait: float) -> int:
    """`Retry-After` takes whole seconds: round up, never 0 (0 invites an immediate retry that fails again)."""
    return max(1, math.ceil(wait))
