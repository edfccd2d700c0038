"""The one way to run a background loop: a pass, repeated until the service stops (Runtime.every runs it)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.common.redact import scrub_text

log = logging.getLogger(__name__)

# One pass of a background loop. Its result is ignored (passes may return counts) unless it is a `NextRun`.
Step = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class NextRun:
    """Returned by a pass that knows when it should run again (e.g. at the next deadline), instead of `interval`."""

    after: float


async def run_every(interval: float, fn: Step, *, name: str, stopping: asyncio.Event,
                    wake: asyncio.Event | None = None, initial_delay: float = 0.0) -> None:
    """Wait `initial_delay`, then run `fn` until `stopping` is set, waiting between passes the `NextRun` delay `fn`
    returned, else `interval`; a set `wake` ends the wait early (it is cleared before the pass, so a wake-up during a pass
    is not lost). A failed pass is logged and the loop goes on: one bad pass never stops a background job.
    Runtime.stop() is the one stopping path: it sets `stopping` and cancels the task."""
    delay = initial_delay
    while not stopping.is_set():
        if delay > 0:
            await _wait_either(stopping, wake, delay)
        if stopping.is_set():
            return
        if wake is not None:
            wake.clear()
        try:
            result = await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Class and a redacted message only: an exception text can quote a stored document.
            log.warning("background pass failed; the loop goes on",
                        extra={"loop": name, "error": type(exc).__name__, "detail": scrub_text(str(exc))[:200]})
            result = None
        delay = max(0.0, result.after) if isinstance(result, NextRun) else interval
        if delay == 0:
            await asyncio.sleep(0)  # a loop that asks to run again at once still lets the others run


async def _wait_either(stopping: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    """Sleep `seconds` (`math.inf`: until an event), or less when `stopping` or `wake` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in (stopping, wake) if e is not None]
    try:
        await asyncio.wait(waiters, timeout=None if math.isinf(seconds) else seconds,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
