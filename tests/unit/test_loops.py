"""The one background-loop runner (services/common/loops.py): passes, wake-ups, failures, one stopping path."""

from __future__ import annotations

import asyncio
import logging
import math

from ledger_fakes import interleave
from support import poll

from services.common.loops import NextRun, run_every


async def _until(check, timeout: float = 5.0) -> None:
    await poll(check, timeout, interval=0.005)


async def _idle(rounds: int = 20) -> None:
    """Let every ready task run until all are blocked (no timer involved: the event loop's ready queue drains)."""
    for _ in range(rounds):
        await interleave()


async def test_runs_every_interval_until_stopped():
    stopping, passes = asyncio.Event(), []

    async def step():
        passes.append(1)
        return 42  # a count, not a delay: the interval still applies

    task = asyncio.create_task(run_every(0.01, step, name="t", stopping=stopping))
    await _until(lambda: len(passes) >= 3)
    stopping.set()
    await asyncio.wait_for(task, 1)
    assert task.done() and task.exception() is None  # stopped: the runner returned, so no pass can follow


async def test_wake_ends_the_wait_and_initial_delay_is_kept():
    stopping, wake, passes = asyncio.Event(), asyncio.Event(), []

    async def step():
        passes.append(1)

    task = asyncio.create_task(run_every(math.inf, step, name="t", stopping=stopping, wake=wake, initial_delay=math.inf))
    await _idle()
    assert passes == [] and not task.done()  # nothing left to run but the wait for a wake-up
    wake.set()
    await _until(lambda: len(passes) == 1)
    assert not wake.is_set()  # cleared before the pass
    await _idle()
    assert len(passes) == 1  # one wake, one pass: the runner is back to waiting
    stopping.set()
    await asyncio.wait_for(task, 1)


async def test_a_pass_can_choose_its_next_delay():
    stopping, passes = asyncio.Event(), []

    async def step():
        passes.append(1)
        return NextRun(0.0 if len(passes) < 5 else 3600)

    task = asyncio.create_task(run_every(3600, step, name="t", stopping=stopping))
    await _until(lambda: len(passes) == 5)
    stopping.set()
    await asyncio.wait_for(task, 1)


async def test_a_failed_pass_is_logged_without_its_personal_data_and_the_loop_goes_on(caplog):
    stopping, passes = asyncio.Event(), []

    async def step():
        passes.append(1)
        if len(passes) == 1:
            raise ValueError("citizen phone 081-234-5678 refused")

    with caplog.at_level(logging.WARNING, logger="services.common.loops"):
        task = asyncio.create_task(run_every(0.01, step, name="sweeper", stopping=stopping))
        await _until(lambda: len(passes) >= 2)
        stopping.set()
        await asyncio.wait_for(task, 1)
    [record] = [r for r in caplog.records if r.name == "services.common.loops"]
    assert record.loop == "sweeper" and record.error == "ValueError"
    assert "081-234-5678" not in record.detail and "refused" in record.detail
    assert record.exc_info is None
