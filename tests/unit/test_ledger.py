"""The one write path (`services.common.ledger`) over an in-memory store: every record counted exactly once, across
crashes between any two writes, redelivery, process deaths and concurrent replicas; rollups equal a recount."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fakes import Crash, CrashingStore, MemoryLedgerStore, interleave
from support import poll

from services.common.counters import Delta, add_delta, counters, with_delta
from services.common.ledger import TOKEN, Book, Ledger, Records, WriteExpired, rewrite

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
# A retraction of event n is -(n + 1): an op list mixes events and retractions, in any order.


def record(n: int) -> dict[str, Any]:
    """Event n: its content is a function of its id, as a redelivery repeats it exactly."""
    return {"_id": {"source": f"/agencies/a{n % 2}", "id": str(n)}, "group": f"g{n % 3}", "learner": f"l{n % 5}",
            "value": 1 + n % 4}


def retraction(n: int) -> dict[str, Any]:
    """The retraction of event n: keyed by the event's key (one retraction counts, however often it is sent)."""
    return {"_id": record(n)["_id"], "by": f"r{n}"}


def doc_of(op: int) -> tuple[str, dict[str, Any]]:
    return ("retractions", retraction(-op - 1)) if op < 0 else ("records", record(op))


def state_id(key: Mapping[str, str]) -> str:
    return f"{key['source']}|{key['id']}"


def count(kind: str, new) -> dict[str, dict[str, Delta]]:
    """A record sets its state `stored` (with its content), a retraction `retracted`: what they contribute further
    depends on both, whichever came first."""
    states: dict[str, Delta] = {}
    for r in new:
        if kind == "records":
            add_delta(states, state_id(r["_id"]), {k: r[k] for k in ("group", "learner", "value")}, {"stored": 1})
        else:
            add_delta(states, state_id(r["_id"]), {}, {"retracted": 1})
    return {"states": states}


def live(state: Mapping[str, Any]) -> bool:
    return state.get("stored", 0) > 0 and not state.get("retracted", 0)


def state_contributes(state: Mapping[str, Any]) -> dict[str, dict[str, Delta]]:
    if not live(state):
        return {}
    g, learner = state["group"], state["learner"]
    out: dict[str, dict[str, Delta]] = {"learners": {}, "counts": {}}
    add_delta(out["learners"], f"{g}|{learner}", {"group": g}, {"live": 1})
    for doc_id in (g, "*"):  # "*": one document every write touches (contention)
        add_delta(out["counts"], doc_id, {"group": doc_id}, {"records": 1, "value": state["value"], f"by.{learner}": 1})
    return out


def learner_contributes(learner: Mapping[str, Any]) -> dict[str, dict[str, Delta]]:
    """A learner counts once while one of its records is live: distinct counting is a contribution too."""
    if learner.get("live", 0) <= 0:
        return {}
    return {"counts": {learner["group"]: Delta({"group": learner["group"]}, {"learners": 1})}}


def make_ledger(store, keep: int = 200) -> Ledger:
    return Ledger(store, journal="journal", records=[Records("records"), Records("retractions")],
                  books=[Book("states", state_contributes, insert_first=True), Book("learners", learner_contributes),
                         Book("counts")],
                  count=count, clock=lambda: NOW, retry=lambda op, what: op(), keep=keep)


def expected(ops: list[int]) -> dict[str, dict[str, Any]]:
    stored = {n for n in ops if n >= 0}
    gone = {-n - 1 for n in ops if n < 0}
    counts: dict[str, Delta] = {}
    learners: set[tuple[str, str]] = set()
    for n in sorted(stored - gone):
        r = record(n)
        for doc_id in (r["group"], "*"):
            add_delta(counts, doc_id, {"group": doc_id}, {"records": 1, "value": r["value"], f"by.{r['learner']}": 1})
        learners.add((r["group"], r["learner"]))
    for g, _ in learners:
        add_delta(counts, g, {"group": g}, {"learners": 1})
    return {doc_id: _figures(with_delta(None, doc_id, d, None)) for doc_id, d in counts.items()}


def _figures(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counters(doc).items() if v}


def stored(store: MemoryLedgerStore) -> dict[str, dict[str, Any]]:
    out = {d["_id"]: _figures(d) for d in store.docs("counts")}
    return {k: v for k, v in out.items() if v}


async def write(ledger: Ledger, ops: list[int]) -> None:
    """One batch, as a service handler writes it: its records first, then its retractions."""
    docs = [doc_of(op) for op in ops]
    await ledger.write([d for kind, d in docs if kind == "records"], "records")
    await ledger.write([d for kind, d in docs if kind == "retractions"], "retractions")


async def deliver(batches: list[list[int]], replicas: int, chance: float, seed: int,
                  keep: int = 200) -> tuple[MemoryLedgerStore, int]:
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
        ledger = make_ledger(wrapped, keep)
        while True:
            try:
                batch = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await write(ledger, batch)
            except Crash:
                crashes += 1
                queue.put_nowait(batch)
                if rng.random() < 0.5:
                    ledger = make_ledger(wrapped, keep)  # the process died: what it had not finished is the sweep's
            await interleave()

    await asyncio.gather(*(replica(i) for i in range(replicas)))
    assert await make_ledger(store).sweep(timedelta(0)) >= 0  # after the run: every interrupted write finished
    return store, crashes


@settings(max_examples=80, deadline=None)
@given(ns=st.lists(st.integers(-41, 40), min_size=0, max_size=80), cuts=st.lists(st.integers(1, 12), min_size=1),
       replicas=st.integers(1, 3), chance=st.sampled_from([0.0, 0.05, 0.15, 0.3]), seed=st.integers(0, 10_000),
       keep=st.sampled_from([4, 200]))  # 4: documents full at once, interrupted writes' tokens must stay
def test_every_record_is_counted_once_whatever_crashes_and_redeliveries(ns, cuts, replicas, chance, seed, keep):
    batches, i = [], 0
    while i < len(ns):
        size = cuts[len(batches) % len(cuts)]
        batches.append(ns[i:i + size])
        i += size
    batches += batches[: len(batches) // 2]  # redelivery of whole batches after a rebalance
    store, _ = asyncio.run(deliver(batches, replicas, chance, seed, keep))
    assert stored(store) == expected(ns)
    assert store.docs("journal") == []
    assert sorted(d["_id"]["id"] for d in store.docs("records")) == sorted({str(n) for n in ns if n >= 0})
    assert len(store.docs("retractions")) == len({n for n in ns if n < 0})
    assert asyncio.run(make_ledger(store).differences()) == []


def test_a_crash_between_any_two_calls_is_finished_by_the_next_write_or_the_sweep():
    batch = list(range(12)) + [-4, -6, -40]  # 12 records, then 3 retractions (of 3, 5 and one not sent)
    calls = _calls_of_one_batch(batch)
    # Each write: open, insert, read and write each of the three books, close.
    assert calls == 2 * 9
    for at in range(calls):
        for after in (False, True):
            for process_died in (False, True):
                store = MemoryLedgerStore()
                ledger = make_ledger(CrashingStore(store, at=at, after=after))
                try:
                    asyncio.run(write(ledger, batch))
                except Crash:
                    pass
                else:
                    raise AssertionError(f"call {at} did not crash")
                if process_died:
                    ledger = make_ledger(store)
                    asyncio.run(write(ledger, batch))  # the redelivery: nothing new, nothing counted twice
                    asyncio.run(ledger.sweep(timedelta(0)))
                else:
                    ledger.store = store  # the handler failed, the process lives: its next write finishes it
                    asyncio.run(write(ledger, batch))
                assert stored(store) == expected(batch), (at, after, process_died)
                assert store.docs("journal") == []


def _calls_of_one_batch(batch) -> int:
    wrapped = CrashingStore(MemoryLedgerStore())
    asyncio.run(write(make_ledger(wrapped), batch))
    return wrapped.calls


def test_the_sweep_leaves_a_write_in_flight_alone_until_the_grace_period_is_over():
    store = MemoryLedgerStore()
    crashing = make_ledger(CrashingStore(store, at=3))  # open, insert, read and write the states, then crash
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


def test_an_interrupted_write_is_recognised_however_many_writes_touched_its_documents_before_the_sweep():
    """Under load a hot rollup sees far more than `keep` writes within a grace period: the tokens of open entries
    stay in the documents, so the sweep does not apply the interrupted write a second time."""
    store = MemoryLedgerStore()
    calls = CrashingStore(MemoryLedgerStore())
    asyncio.run(make_ledger(calls, keep=3).write([record(1)]))
    dying = make_ledger(CrashingStore(store, at=calls.calls - 1), keep=3)  # every book written, the entry not closed
    try:
        asyncio.run(dying.write([record(1)]))
    except Crash:
        pass
    live = make_ledger(store, keep=3)
    for n in range(2, 30):  # every write touches the "*" document: it drops old tokens at each
        asyncio.run(live.write([record(n)]))
    star = next(d for d in store.docs("counts") if d["_id"] == "*")
    assert len(star["applied"]) == 4  # the last three, and the interrupted write's
    assert asyncio.run(live.sweep(timedelta(0))) == 1
    assert stored(store) == expected(list(range(1, 30)))
    asyncio.run(live.write([record(30)]))  # its entry closed: its token goes at the next write
    assert len(next(d for d in store.docs("counts") if d["_id"] == "*")["applied"]) == 3


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
    ledger.books = (*ledger.books[:2], Book("counts", kept=("target",)))
    asyncio.run(write(ledger, list(range(10))))
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
    rng = random.Random(7)
    ns = [rng.randrange(-200, 200) for _ in range(600)]
    batches = [ns[i:i + 25] for i in range(0, len(ns), 25)]
    store, crashes = asyncio.run(deliver(batches + batches[::3], replicas=3, chance=0.1, seed=3))
    assert crashes > 5, crashes  # the run did crash, often
    assert stored(store) == expected(ns)
    assert asyncio.run(make_ledger(store).differences()) == []


def test_one_process_with_writes_in_flight_at_once_finishes_only_the_ones_that_failed():
    """Concurrent writes of one Ledger (one process, several handlers): a write in flight is not "unfinished"."""
    store = MemoryLedgerStore()
    rng = random.Random(11)
    ns = [rng.randrange(-120, 120) for _ in range(300)]
    batches = [ns[i:i + 20] for i in range(0, len(ns), 20)]

    async def run() -> int:
        ledger = make_ledger(CrashingStore(store, chance=0.05, rng=random.Random(4)))
        failures = 0

        async def handle(batch: list[int]) -> None:
            nonlocal failures
            while True:
                try:
                    await write(ledger, batch)
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


def test_a_write_past_its_lease_stops_before_its_next_call_and_is_finished_by_a_recovery():
    """A long outage: the writer must not go on once a sweep may finish its entry (the sweep would read the records
    while they are still being inserted, and count a part of them)."""
    store = MemoryLedgerStore()
    now = [0.0]

    class SlowStore(CrashingStore):
        def __getattr__(self, name):
            method = getattr(self.store, name)

            async def call(*args, **kwargs):
                if name == "insert_new":
                    now[0] += 10  # the insert lands after a long wait
                return await method(*args, **kwargs)
            return call

    ledger = Ledger(SlowStore(store), journal="journal", records=[Records("records"), Records("retractions")],
                    books=make_ledger(store).books, count=count, clock=lambda: NOW, retry=lambda op, what: op(),
                    lease=timedelta(seconds=5), timer=lambda: now[0])
    try:
        asyncio.run(ledger.write([record(n) for n in range(4)]))
    except WriteExpired:
        pass
    else:
        raise AssertionError("the write went on past its lease")
    assert len(store.docs("records")) == 4 and store.docs("counts") == []  # stored, nothing counted yet
    assert asyncio.run(make_ledger(store).sweep(timedelta(0))) == 1
    assert stored(store) == expected(list(range(4)))


# --- rewrite: the one compare-and-set write of derived documents (books, and the roadmap's milestones) -----------
def _appending(item: str, seen: list[str]):
    """A projection that adds `item` to a document's list once (idempotent by content, like a milestone's facts)."""

    async def derive(found: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
        await interleave()
        out: dict[str, dict[str, Any] | None] = {}
        for doc_id, doc in found.items():
            items = list((doc or {}).get("items", []))
            seen.append(doc_id)
            out[doc_id] = None if item in items else {"items": [*items, item]}
        return out

    return derive


@given(st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=4), st.randoms(use_true_random=False))
@settings(max_examples=40, deadline=None)
def test_racing_rewrites_lose_nothing_and_each_write_bumps_the_revision_once(writers, docs, rnd):
    async def run() -> None:
        store = MemoryLedgerStore()
        ids = [f"d{i}" for i in range(docs)]
        seen: list[str] = []
        targets = [rnd.sample(ids, k=rnd.randint(1, docs)) for _ in range(writers)]
        results = await asyncio.gather(*(rewrite(store, "c", target, _appending(f"w{w}", seen),
                                                 assume_absent=rnd.random() < 0.5) for w, target in enumerate(targets)))
        stored = {d["_id"]: d for d in store.docs("c")}
        for w, target in enumerate(targets):  # nothing lost to a race
            assert all(f"w{w}" in stored[doc_id]["items"] for doc_id in target)
        for doc_id, doc in stored.items():
            wrote = [w for w, written in enumerate(results) if any(d["_id"] == doc_id for d in written)]
            assert sorted(doc["items"]) == sorted(f"w{w}" for w in wrote)  # every landed write is there, once
            assert doc["rev"] == len(wrote)
        # Each writer's call returns only what it landed, as of its last derivation.
        for w, written in enumerate(results):
            assert all(f"w{w}" in d["items"] for d in written)

    asyncio.run(run())


def test_rewrite_leaves_a_document_derived_as_none_and_reads_nothing_first_when_assumed_absent():
    async def run() -> None:
        store = MemoryLedgerStore()
        seen: list[str] = []
        assert [d["_id"] for d in await rewrite(store, "c", ["a", "b"], _appending("x", seen), assume_absent=True)] == ["a", "b"]
        assert await rewrite(store, "c", ["a"], _appending("x", seen)) == []  # nothing new: nothing written
        [b] = await rewrite(store, "c", ["b"], _appending("y", seen), assume_absent=True)  # exists: read, then derived again
        assert b["items"] == ["x", "y"] and b["rev"] == 2 and seen[-2:] == ["b", "b"]

    asyncio.run(run())


# --- rebuild while writers run -----------------------------------------------------------------------------
class CountingPauses(MemoryLedgerStore):
    """Counts how often a paused writer looked at the pause (it only does while one is in force)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def pause_until(self, journal: str):
        self.waits += 1
        return await super().pause_until(journal)


@given(st.integers(min_value=0, max_value=10_000))
@settings(max_examples=15, deadline=None)
def test_a_rebuild_while_writers_run_repairs_drift_and_loses_and_doubles_nothing(seed):
    """Writers keep writing while a rebuild recounts: they wait during the pause and go on after it; the writes in
    flight when it began finish first. A counter that had drifted is right afterwards, and so is everything."""
    import services.common.ledger as ledger_module

    async def run() -> None:
        ledger_module.PAUSE_POLL_SECONDS, saved_poll = 0.0005, ledger_module.PAUSE_POLL_SECONDS
        try:
            rng = random.Random(seed)
            store, t0 = CountingPauses(), time.monotonic()

            def clock() -> datetime:
                return NOW + timedelta(seconds=time.monotonic() - t0)

            def ledger() -> Ledger:
                return Ledger(store, journal="journal", records=[Records("records"), Records("retractions")],
                              books=[Book("states", state_contributes, insert_first=True),
                                     Book("learners", learner_contributes), Book("counts")],
                              count=count, clock=clock, retry=lambda op, what: op())

            ops = list(range(240)) + [-(n + 1) for n in range(0, 240, 7)]
            rng.shuffle(ops)
            batches = [ops[i:i + 8] for i in range(0, len(ops), 8)]
            first, rest = batches[:10], batches[10:]
            for batch in first:
                await write(ledger(), batch)
            await store.write_revisions("counts", [(None, {"_id": "drift", "group": "drift", "records": 7})])
            queue = list(rest)

            async def writer() -> None:
                replica = ledger()
                while queue:
                    await write(replica, queue.pop(0))

            async def rebuild() -> None:
                begin = rng.randint(3, len(rest) - 8)  # in the middle of the writes, batches still to come
                await poll(lambda: len(rest) - len(queue) >= begin, 10, interval=0, what="writes under way")
                await ledger().rebuild(abandoned_after=timedelta(minutes=1))

            await asyncio.gather(rebuild(), *(writer() for _ in range(3)))
            assert stored(store) == expected(ops)
            assert store.pauses == {} and store.docs("journal") == []
            assert store.waits > 0  # writers did wait for the rebuild
        finally:
            ledger_module.PAUSE_POLL_SECONDS = saved_poll

    asyncio.run(run())


def test_a_rebuild_that_died_lets_writers_go_on_when_its_pause_ends():
    import services.common.ledger as ledger_module

    async def run() -> None:
        store, now = MemoryLedgerStore(), [NOW]
        ledger = Ledger(store, journal="journal", records=[Records("records"), Records("retractions")],
                        books=[Book("states", state_contributes, insert_first=True), Book("learners", learner_contributes),
                               Book("counts")], count=count, clock=lambda: now[0], retry=lambda op, what: op())
        await store.set_pause("journal", NOW + timedelta(minutes=30))  # a rebuild's pause; the rebuild died
        blocked = asyncio.ensure_future(write(ledger, [1, 2, 3]))
        # The write has seen the pause and looked again: it is waiting, not finished.
        await poll(lambda: store.pause_reads >= 2, 5, interval=0.001, what="the write waiting")
        assert not blocked.done() and store.docs("records") == []  # waiting, nothing written
        now[0] = NOW + timedelta(minutes=31)  # the pause ends by itself
        await asyncio.wait_for(blocked, 5)
        assert stored(store) == expected([1, 2, 3])

    saved_poll, ledger_module.PAUSE_POLL_SECONDS = ledger_module.PAUSE_POLL_SECONDS, 0.0005
    try:
        asyncio.run(run())
    finally:
        ledger_module.PAUSE_POLL_SECONDS = saved_poll


class RecordingStore(MemoryLedgerStore):
    """Counts the documents each rebuild write sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, int]] = []

    async def replace_all(self, collection, docs):
        self.sent.append(("replace_all", len(docs)))
        await super().replace_all(collection, docs)

    async def patch(self, collection, docs, removed):
        self.sent.append(("patch", len(docs) + len(removed)))
        await super().patch(collection, docs, removed)


@given(st.lists(st.tuples(st.sampled_from(["same", "differs", "new", "gone", "kept only"]), st.integers(0, 3)),
                max_size=60))
@settings(max_examples=200, deadline=None)
def test_reconcile_writes_only_what_differs_and_leaves_the_collection_equal_to_the_recount(plan):
    """Whatever share of the documents differs: afterwards the collection holds exactly the recount (with the kept
    fields of the stored documents); documents that already said the same keep their bookkeeping untouched; a
    written document gets a later revision; a small share is patched in place, a large one swapped in."""
    from services.common.ledger import PATCH_SHARE, reconcile, stored_state

    store = RecordingStore()
    stored_docs, recount = {}, []
    for i, (fate, n) in enumerate(plan):
        doc_id = f"d{i}"
        counted = {"_id": doc_id, "rev": 1, "applied": [], "group": doc_id, "records": n + 1}
        if fate in ("same", "differs", "gone", "kept only"):
            on_disk = {**counted, "rev": 5 + n, "applied": ["t1", "t2"],
                       "records": n + (2 if fate == "differs" else 1)}
            if fate == "kept only":
                on_disk = {"_id": doc_id, "rev": 3, "target": n}
            elif n == 0:
                on_disk["target"] = 10
            stored_docs[doc_id] = on_disk
        if fate in ("same", "differs", "new"):
            recount.append(counted)
    asyncio.run(store.replace_all("book", list(stored_docs.values())))
    store.sent.clear()
    result = asyncio.run(reconcile(store, "book", [dict(d) for d in recount], kept=("target",)))

    after = {d["_id"]: d for d in store.docs("book")}
    want = {d["_id"]: {**d, **({"target": stored_docs[d["_id"]]["target"]}
                               if "target" in stored_docs.get(d["_id"], {}) else {})} for d in recount}
    want.update({i: {"_id": i, "target": d["target"]} for i, d in stored_docs.items() if i not in want and "target" in d})
    assert {i: stored_state(d) for i, d in after.items()} == {i: stored_state(d) for i, d in want.items()}
    differing = [i for i in want if i not in stored_docs or stored_state(stored_docs[i]) != stored_state(want[i])]
    differing += [i for i in stored_docs if i not in want]
    assert result["changed"] + result["removed"] == len(differing)
    for doc_id, doc in after.items():
        if doc_id not in differing:
            assert doc == stored_docs[doc_id]  # left as it was, bookkeeping and all
        elif doc_id in stored_docs:
            assert doc["rev"] > stored_docs[doc_id]["rev"]
    if not differing:
        assert store.sent == []
    elif len(differing) > PATCH_SHARE * max(len(want), len(stored_docs)):
        assert store.sent == [("replace_all", len(want))]
    else:
        assert store.sent == [("patch", len(differing))]


def test_a_write_that_failed_before_a_rebuild_is_not_finished_again_after_it():
    """A write fails half-way (its process lives and would finish it at its next write); a rebuild counts its
    records and clears its journal entry; the process's next write must not apply it a second time."""
    batch = list(range(12))
    for at in range(3, _calls_of_one_batch(batch) // 2):  # after the records are stored, before the entry closes
        store = MemoryLedgerStore()
        ledger = make_ledger(CrashingStore(store, at=at))
        try:
            asyncio.run(write(ledger, batch))
        except Crash:
            pass
        asyncio.run(make_ledger(store).rebuild(abandoned_after=timedelta(0)))
        assert stored(store) == expected(batch)
        ledger.store = store
        asyncio.run(write(ledger, [40]))  # its next write
        assert stored(store) == expected([*batch, 40]), at
        assert store.docs("journal") == []
