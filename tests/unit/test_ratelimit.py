"""The per-key token bucket (services.common.ratelimit): burst, refill, cost, Retry-After, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.ratelimit import TokenBucket, retry_after_seconds


def clocked(rate: float, burst: float, max_keys: int = 10_000) -> tuple[TokenBucket, list[float]]:
    now = [100.0]
    return TokenBucket(rate, burst, clock=lambda: now[0], max_keys=max_keys), now


def test_burst_then_refill_and_wait():
    bucket, now = clocked(rate=2.0, burst=3)
    assert [bucket.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("k") == pytest.approx(0.5)
    assert bucket.take("other") == 0.0  # per key
    now[0] += 0.5
    assert bucket.take("k") == 0.0 and bucket.take("k") > 0
    now[0] += 100  # refills up to the burst, never beyond
    assert [bucket.take("k") for _ in range(3)] == [0.0, 0.0, 0.0] and bucket.take("k") > 0


def test_cost_counts_events_and_a_refusal_takes_nothing():
    bucket, now = clocked(rate=10.0, burst=100)
    assert bucket.take("k", 60) == 0.0
    assert bucket.take("k", 60) == pytest.approx(2.0)  # 40 left, 20 missing at 10/s
    assert bucket.take("k", 40) == 0.0  # the refused 60 took nothing
    now[0] += 1.0
    assert bucket.take("k", 10) == 0.0 and bucket.take("k", 1) > 0


def test_a_cost_above_the_burst_is_charged_as_the_burst():
    bucket, now = clocked(rate=1.0, burst=5)
    assert bucket.take("k", 500) == 0.0  # would otherwise never pass
    assert bucket.take("k", 500) == pytest.approx(5.0)


def test_a_clock_going_backwards_never_adds_tokens():
    bucket, now = clocked(rate=1.0, burst=2)
    bucket.take("k", 2)
    now[0] -= 50
    assert bucket.take("k") > 0


def test_memory_is_bounded_and_the_least_recent_key_is_forgotten():
    bucket, now = clocked(rate=1.0, burst=1, max_keys=3)
    for key in ("a", "b", "c"):
        assert bucket.take(key) == 0.0
    assert bucket.take("a") > 0  # "a" is now the most recent; "b" the least
    assert bucket.take("d") == 0.0
    assert len(bucket) == 3
    assert bucket.take("a") > 0  # still remembered (and still empty)
    assert bucket.take("b") == 0.0  # forgotten: starts again with a full bucket
    for i in range(10_000):
        bucket.take(f"k{i}")
    assert len(bucket) == 3


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
    with pytest.raises(ValueError):
        TokenBucket(1, 0)


@pytest.mark.parametrize(("wait", "header"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.2, 2), (59.99, 60)])
def test_retry_after_is_whole_seconds_rounded_up_and_never_zero(wait, header):
    assert retry_after_seconds(wait) == header


@given(st.lists(st.tuples(st.floats(0, 5), st.integers(1, 20)), min_size=1, max_size=60),
       st.floats(0.5, 50), st.integers(1, 40))
def test_granted_cost_never_exceeds_burst_plus_refill(steps, rate, burst):
    """Whatever the request pattern, what a key is granted over a span is at most burst + rate * span, and
    a refused take says how long to wait: after that wait the same take is granted."""
    bucket, now = clocked(rate=rate, burst=burst)
    start, granted = now[0], 0.0
    for gap, cost in steps:
        now[0] += gap
        wait = bucket.take("k", cost)
        if wait == 0:
            granted += min(cost, burst)
        else:
            assert wait > 0
            probe, probe_now = clocked(rate=rate, burst=burst)
            probe._state = bucket._state.copy()  # same state, a clock moved on by `wait`
            probe_now[0] = now[0] + wait + 1e-9
            assert probe.take("k", cost) == 0.0
    assert granted <= burst + rate * (now[0] - start) + 1e-6
