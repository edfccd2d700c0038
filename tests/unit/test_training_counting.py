"""Training's counting rules over the one write path, without servers: completions and retractions in any order and
any batch composition, redelivered, with crashes between any two writes and racing replicas, always add up to what
a naive count of the live completions says."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fakes import Crash, CrashingStore, MemoryLedgerStore, interleave

from services.contracts.events import TRAINING_COURSE_COMPLETED
from services.training import domain
from services.training.adapters import counting_ledger

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def completion(n: int) -> dict:
    """Completion n's record (its content a function of n): 4 learners, 2 competencies, every third one failed;
    what counting reads of it (fiscal year 2569)."""
    return {"_id": f"/agencies/dga/t\x1fe{n}", "source": "/agencies/dga/t", "id": f"e{n}", "type": TRAINING_COURSE_COMPLETED,
            "data": {"agency": "dga", "competency": ("mindset", "academic")[n % 2], "learner_ref": f"L{n % 4}",
                     "hours": 1.5 + n % 3, "passed": n % 3 != 0, "completed_on": "2026-01-05"}}


async def apply(ledger, ops: list[int]) -> None:
    """One batch as the handler writes it: its completions, then its retractions (-(n + 1) retracts n)."""
    await ledger.write([completion(n) for n in ops if n >= 0], domain.COMPLETIONS)
    await ledger.write([domain.void_doc(completion(-n - 1)["_id"], f"r{n}", NOW) for n in ops if n < 0], domain.VOIDS)


def reference(ops: list[int]) -> dict[str, dict]:
    live = {n for n in ops if n >= 0} - {-n - 1 for n in ops if n < 0}
    out: dict[str, dict] = {}
    ready: dict[str, set[str]] = {}
    for n in live:
        c = completion(n)["data"]
        rid = domain.rollup_id(2569, "dga", c["competency"])
        figures = out.setdefault(rid, domain.rollup_figures(None))
        figures["completions"] += 1
        figures["hours"] = round(figures["hours"] + c["hours"], 4)
        if c["passed"]:
            figures["passed_completions"] += 1
            figures["passed_hours"] = round(figures["passed_hours"] + c["hours"], 4)
            ready.setdefault(rid, set()).add(c["learner_ref"])
    for rid, learners in ready.items():
        out[rid]["ready_learners"] = len(learners)
    return out


def stored(store: MemoryLedgerStore) -> dict[str, dict]:
    out = {d["_id"]: domain.rollup_figures(d) for d in store.docs(domain.ROLLUPS)}
    return {rid: f for rid, f in out.items() if any(f.values())}


async def deliver(batches: list[list[int]], replicas: int, chance: float, seed: int) -> MemoryLedgerStore:
    store = MemoryLedgerStore()
    queue = list(batches)
    rng = random.Random(seed)

    async def replica(i: int) -> None:
        wrapped = CrashingStore(store, chance=chance, rng=random.Random(seed + i))
        ledger = counting_ledger(wrapped, lambda: NOW)
        while queue:
            batch = queue.pop(0)
            try:
                await apply(ledger, batch)
            except Crash:
                queue.append(batch)  # redelivered, maybe to another replica
                if rng.random() < 0.5:
                    ledger = counting_ledger(wrapped, lambda: NOW)  # the process died
            await interleave()

    await asyncio.gather(*(replica(i) for i in range(replicas)))
    await counting_ledger(store, lambda: NOW).sweep(timedelta(0))
    return store


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.integers(-30, 29), max_size=60), size=st.integers(1, 10), replicas=st.integers(1, 3),
       chance=st.sampled_from([0.0, 0.1, 0.25]), seed=st.integers(0, 1000))
def test_counts_equal_a_naive_count_of_the_live_completions(ops, size, replicas, chance, seed):
    batches = [ops[i:i + size] for i in range(0, len(ops), size)]
    store = asyncio.run(deliver(batches + batches[::2], replicas, chance, seed))
    assert stored(store) == reference(ops)
    assert store.docs("training_journal") == []
    assert asyncio.run(counting_ledger(store, lambda: NOW).differences()) == []
