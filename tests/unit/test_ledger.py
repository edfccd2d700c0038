"""The one write path (`services.common.ledger`) over an in-memory store: every record counted exactly once, across
crashes between any two writes, redelivery, process deaths and concurrent replicas; rollups equal a recount."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fakes import Crash, CrashingStore, MemoryLedgerStore

from services.common.counters import Delta, add_delta, with_delta
from services.common.ledger import TOKEN, Book, Ledger, Stage

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def record(n: int) -> dict[str, Any]:
    """Event n: its content is a function of its id, as a redelivery repeats it exactly."""
    return {"_id": {"source": f"/agencies/a{n % 2}", "id": str(n)}, "group": f"g{n % 3}", "learner": f"l{n % 5}",
            "value": 1 + n % 4}


def learners(new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stage 1: one document per group x learner, from the records a write stored new."""
    return [{"_id": f"{r['group']}|{r['learner']}", "group": r["group"]} for r in new]


def counts(new) -> dict[str, dict[str, Delta]]:
    records, firsts = new[0], new[1] if len(new) > 1 else []
    out: dict[str, Delta] = {}
    for r in records:
        for doc_id in (r["group"], "*"):  # "*": one document every write touches (contention)
            add_delta(out, doc_id, {"group": doc_id}, {"records": 1, "value": r["value"], f"by.{r['learner']}": 1})
    for f in firsts:
        add_delta(out, f["group"], {"group": f["group"]}, {"learners": 1})
    return {"counts": out}


def make_ledger(store) -> Ledger:
    return Ledger(store, journal="journal", stages=[Stage("records"), Stage("learners", derive=learners)],
                  books=[Book("counts")], count=counts, clock=lambda: NOW, retry=lambda op, what: op())


def expected(ns: list[int]) -> dict[str, dict[str, Any]]:
    distinct = {n: record(n) for n in ns}
    out: dict[str, Delta] = {}
    firsts = {f"{r['group']}|{r['learner']}": r["group"] for r in distinct.values()}
    merged = counts([list(distinct.values()), [{"_id": k, "group": g} for k, g in firsts.items()]])["counts"]
    out.update(merged)
    return {doc_id: {k: v for k, v in with_delta(None, doc_id, d, None).items() if k not in ("applied", "rev")}
            for doc_id, d in out.items()}


def stored(store: MemoryLedgerStore) -> dict[str, dict[str, Any]]:
    return {d["_id"]: {k: v for k, v in d.items() if k not in ("applied", "rev")} for d in store.docs("counts")}


async def deliver(batches: list[list[int]], replicas: int, chance: float, seed: int) -> tuple[MemoryLedgerStore, int]:
    """Replicas take batches from one queue; a batch whose write crashed goes back to the queue (redelivery). After a
    crash the replica's process died (a fresh Ledger, its memory lost) or only its handler failed (same Ledger)."""
    store = MemoryLedgerStore()
    rng = random.Random(seed)
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    crashes = 0

    async def replica(i: int) -> None:
        nonlocal crashes
        wrapped = CrashingStore(store, chance=chance, rng=random.Random(seed * 31 + i))
        ledger = make_ledger(wrapped)
        while True:
            try:
                batch = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await ledger.write([record(n) for n in batch])
            except Crash:
                crashes += 1
                queue.put_nowait(batch)
                if rng.random() < 0.5:
                    ledger = make_ledger(wrapped)  # the process died: what it had not finished is the sweep's
            await asyncio.sleep(0)

    await asyncio.gather(*(replica(i) for i in range(replicas)))
    assert await make_ledger(store).sweep(timedelta(0)) >= 0  # after the run: every interrupted write finished
    return store, crashes


@settings(max_examples=80, deadline=None)
@given(ns=st.lists(st.integers(0, 40), min_size=0, max_size=80), cuts=st.lists(st.integers(1, 12), min_size=1),
       replicas=st.integers(1, 3), chance=st.sampled_from([0.0, 0.05, 0.15, 0.3]), seed=st.integers(0, 10_000))
def test_every_record_is_counted_once_whatever_crashes_and_redeliveries(ns, cuts, replicas, chance, seed):
    batches, i = [], 0
    while i < len(ns):
        size = cuts[len(batches) % len(cuts)]
        batches.append(ns[i:i + size])
        i += size
    batches += batches[: len(batches) // 2]  # redelivery of whole batches after a rebalance
    store, _ = asyncio.run(deliver(batches, replicas, chance, seed))
    assert stored(store) == expected(ns)
    assert store.docs("journal") == []
    assert sorted(d["_id"]["id"] for d in store.docs("records")) == sorted({str(n) for n in ns})
    assert asyncio.run(make_ledger(store).differences()) == []


def test_a_crash_between_any_two_calls_is_finished_by_the_next_write_or_the_sweep():
    batch = [record(n) for n in range(12)]
    calls = _calls_of_one_write(batch)
    assert calls >= 6  # open, insert, insert derived, read, write, close
    for at in range(calls):
        for after in (False, True):
            for process_died in (False, True):
                store = MemoryLedgerStore()
                ledger = make_ledger(CrashingStore(store, at=at, after=after))
                try:
                    asyncio.run(ledger.write(batch))
                except Crash:
                    pass
                else:
                    raise AssertionError(f"call {at} did not crash")
                if process_died:
                    ledger = make_ledger(store)
                    asyncio.run(ledger.write(batch))  # the redelivery: nothing new, nothing counted twice
                    asyncio.run(ledger.sweep(timedelta(0)))
                else:
                    ledger.store = store  # the handler failed, the process lives: its next write finishes it
                    asyncio.run(ledger.write(batch))
                assert stored(store) == expected(list(range(12))), (at, after, process_died)
                assert store.docs("journal") == []


def _calls_of_one_write(batch) -> int:
    wrapped = CrashingStore(MemoryLedgerStore())
    asyncio.run(make_ledger(wrapped).write(batch))
    return wrapped.calls


def test_the_sweep_leaves_a_write_in_flight_alone_until_the_grace_period_is_over():
    store = MemoryLedgerStore()
    crashing = make_ledger(CrashingStore(store, at=3))  # open, insert records, insert learners, then read: crash
    try:
        asyncio.run(crashing.write([record(1)]))
    except Crash:
        pass
    assert len(store.docs("journal")) == 1
    later = make_ledger(store)
    assert asyncio.run(later.sweep(timedelta(minutes=5))) == 0  # written "now": maybe a live replica's
    later.clock = lambda: NOW + timedelta(minutes=5)
    assert asyncio.run(later.sweep(timedelta(minutes=5))) == 1
    assert stored(store) == expected([1])


def test_records_keep_the_token_of_the_write_that_stored_them_first():
    store = MemoryLedgerStore()
    ledger = make_ledger(store)
    asyncio.run(ledger.write([record(1), record(2)]))
    first = {d["_id"]["id"]: d[TOKEN] for d in store.docs("records")}
    asyncio.run(ledger.write([record(2), record(3)]))
    after = {d["_id"]["id"]: d[TOKEN] for d in store.docs("records")}
    assert after["1"] == first["1"] and after["2"] == first["2"] and after["3"] != first["2"]


def test_a_recount_rebuilds_the_counters_and_keeps_what_is_not_counted():
    store = MemoryLedgerStore()
    ledger = make_ledger(store)
    ledger.books = (Book("counts", kept=("target",)),)
    asyncio.run(ledger.write([record(n) for n in range(10)]))
    store.collections["counts"][repr("g0")]["target"] = 50
    store.collections["counts"][repr("g1")]["records"] += 7  # a wrong figure
    store.collections["counts"]["'g9'"] = {"_id": "g9", "target": 3}  # a target without records
    assert len(asyncio.run(ledger.differences())) == 1
    asyncio.run(ledger.recount())
    assert asyncio.run(ledger.differences()) == []
    docs = {d["_id"]: d for d in store.docs("counts")}
    assert docs["g0"]["target"] == 50 and docs["g9"] == {"_id": "g9", "target": 3}
    assert Counter(d["records"] for d in docs.values() if d["_id"] in ("g0", "g1", "g2")) == Counter([4, 3, 3])


def test_three_replicas_racing_with_many_crashes_count_each_record_once():
    ns = [random.Random(7).randrange(200) for _ in range(600)]
    batches = [ns[i:i + 25] for i in range(0, len(ns), 25)]
    store, crashes = asyncio.run(deliver(batches + batches[::3], replicas=3, chance=0.1, seed=3))
    assert crashes > 5, crashes  # the run did crash, often
    assert stored(store) == expected(ns)
    assert asyncio.run(make_ledger(store).differences()) == []


def test_one_process_with_writes_in_flight_at_once_finishes_only_the_ones_that_failed():
    """Concurrent writes of one Ledger (one process, several handlers): a write in flight is not "unfinished"."""
    store = MemoryLedgerStore()
    ns = [random.Random(11).randrange(120) for _ in range(300)]
    batches = [ns[i:i + 20] for i in range(0, len(ns), 20)]

    async def run() -> int:
        ledger = make_ledger(CrashingStore(store, chance=0.05, rng=random.Random(4)))
        failures = 0

        async def handle(batch: list[int]) -> None:
            nonlocal failures
            while True:
                try:
                    await ledger.write([record(n) for n in batch])
                    return
                except Crash:
                    failures += 1

        await asyncio.gather(*(handle(b) for b in batches + batches[::2]))
        ledger.store = store
        await ledger.finish_own()
        return failures

    assert asyncio.run(run()) > 0
    assert stored(store) == expected(ns)
    assert store.docs("journal") == []
