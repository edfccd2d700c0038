"""Service layer of the roadmap: apply events to milestones, raise alerts exactly once, watch deadlines,
keep the summary figures current."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.auth import Principal
from services.common.clock import Clock, utc_now
from services.common.consumer import Batch, Rejected
from services.common.kafka import EventPublisher
from services.common.ledger import BOOKKEEPING, read_all, reconcile, stored_state
from services.common.loops import NextRun
from services.common.mongo import as_stored
from services.contracts.envelope import (
    AUTHORITY,
    Event,
    EventError,
    from_audit_record,
    make_event,
)
from services.contracts.events import FACT_RETRACTED, MILESTONE_PLANNED, ROADMAP_CONSUMED_TYPES
from services.roadmap import corrections, dependencies, domain, overview
from services.roadmap.adapters import MILESTONES, MilestoneFilter, MilestoneStore, roadmap_ledger
from services.roadmap.confidence import compute_stats, confidence_rule
from services.roadmap.domain import ALERT_TYPES
from services.roadmap.metrics import RoadmapMetrics
from services.roadmap.settings import RoadmapSettings

log = logging.getLogger(__name__)
WATCHER_SOURCE = "/services/roadmap/watcher"
JOURNAL_GRACE = timedelta(minutes=5)  # a journal entry older than this belongs to a roadmap process that died
# Generated from the thresholds in confidence.py, so the text cannot drift from the rule.
CONFIDENCE_RULE = confidence_rule()


class RoadmapService:
    def __init__(self, repo: MilestoneStore, publisher: EventPublisher, metrics: RoadmapMetrics,
                 settings: RoadmapSettings, clock: Clock = utc_now, lease_clock: Clock = utc_now):
        self.repo = repo
        self.publisher = publisher
        self.metrics = metrics
        self.settings = settings
        self.clock = clock  # the "now" of every status rule and alert (tests move it)
        # Alert claims are leases between replicas in MongoDB: they need the wall time every replica shares,
        # never a test's moved clock (a claim taken "in the future" would look stale and be sent twice).
        self.lease_clock = lease_clock
        # Its journal entries are stamped with the wall time every replica shares, like the alert claims.
        self.ledger = roadmap_ledger(repo.ledger_store, lease_clock)
        self.wake = asyncio.Event()  # set when deadlines may have changed: the watcher re-reads the next one
        self.stats_dirty = asyncio.Event()
        # The next open deadline as far as this replica knows: lowered by its own writes, re-read from
        # MongoDB when it has passed and at every rescan (other replicas' writes are theirs to watch).
        self._next_deadline: datetime | None = None
        self._next_known = False
        self._next_rescan = 0.0  # monotonic time of the next safety-net rescan (0: at the first pass)
        self._settling: dict[str, datetime] = {}  # milestone id -> when its held alerts may go out

    # --- applying events ---------------------------------------------------------------------
    async def handle(self, batch: Batch) -> list[Rejected]:
        """Consumer handler: add each event's fact to its milestone and recompute (idempotent)."""
        by_milestone: dict[str, list[Event]] = defaultdict(list)
        for event in batch.events:
            by_milestone[event.data.milestone_id].append(event)
        # Per milestone, what its last derivation refused and applied (a write that lost its race is derived
        # again from what the other writer stored).
        outcome: dict[str, tuple[list[Rejected], list[Event]]] = {}
        # Milestones the batch leaves as stored (every fact known: a redelivery) still cascade: the delivery that
        # stored them may have failed before their dependants were refreshed and their alerts raised.
        unchanged: dict[str, dict[str, Any]] = {}
        cycles = await self._cycles(batch.events)
        plan_deps = {d for e in batch.events if e.type == MILESTONE_PLANNED for d in e.data.depends_on}

        async def derive(found: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
            # Every plan's dependencies, not only the plan in force: a retraction in this batch may restore an
            # earlier plan, whose dependencies must then be judged by their state too (not taken as unknown).
            deps = plan_deps | {d for doc in found.values() if doc for f in doc.get("facts", []) if f["kind"] == "planned"
                                for d in f["data"].get("depends_on", [])}
            dep_status = await self.repo.dependency_states(deps)
            now = self.clock()
            out: dict[str, dict[str, Any] | None] = {}
            for mid, doc in found.items():
                new_doc, refused, applied = self._apply(mid, doc, by_milestone[mid], now, dep_status, cycles)
                outcome[mid] = (refused, applied)
                out[mid] = new_doc
                if new_doc is None and doc is not None:
                    unchanged[mid] = doc
            return out

        changed = await self.ledger.rewrite(MILESTONES, list(by_milestone), derive)
        rejected: list[Rejected] = []
        for refused, applied in outcome.values():
            rejected.extend(refused)
            for event in applied:
                self.metrics.applied.labels(event.type).inc()
            for r in refused:
                self.metrics.rejected.labels(r.error.reason).inc()
        saved = {d["_id"] for d in changed}
        await self.after_change(changed + [d for mid, d in unchanged.items() if mid not in saved])
        return rejected

    async def _cycles(self, events: Sequence[Event], edges: dependencies.EdgeLoader | None = None,
                      ) -> dict[tuple[str, str], list[str]]:
        """Plans whose depends_on would close a cycle in the stored graph (plus this batch's earlier plans),
        by event key, with the cycle's path. Checked before anything is written, so a refused plan leaves
        its milestone as it was."""
        overlay: dict[str, list[str]] = {}
        cache: dict[str, Sequence[str]] = {}  # stored edges read for this batch, shared by its plans
        found: dict[tuple[str, str], list[str]] = {}
        for event in events:
            if event.type != MILESTONE_PLANNED or not event.data.depends_on:
                continue
            mid = event.data.milestone_id
            path = await dependencies.cycle_path(mid, event.data.depends_on, edges or self.repo.dependencies_of, overlay,
                                                 cache)
            if path is None:
                overlay.setdefault(mid, []).extend(event.data.depends_on)
            else:
                found[event.key] = path
        return found

    def _apply(self, mid: str, doc: Mapping[str, Any] | None, events: Sequence[Event], now: datetime,
               dep_status: Mapping[str, Mapping[str, Any]], cycles: Mapping[tuple[str, str], list[str]] | None = None,
               ) -> tuple[dict[str, Any] | None, list[Rejected], list[Event]]:
        facts = list(doc.get("facts", [])) if doc else []
        sizes = domain.FactBytes.held(doc)
        refused, applied = self._admit(mid, facts, doc.get("owner_agency") if doc else None, events, cycles, sizes)
        if not applied:
            return None, refused, applied
        return self._derive(mid, facts, doc, now, dep_status, sizes), refused, applied

    def _admit(self, mid: str, facts: list[dict[str, Any]], owner: str | None, events: Sequence[Event],
               cycles: Mapping[tuple[str, str], list[str]] | None,
               sizes: domain.FactBytes) -> tuple[list[Rejected], list[Event]]:
        """Add to `facts` the events the rules let in, judged against `owner` (and the plans among them) and what
        the facts take already (`sizes`, kept up to date); a duplicate changes nothing. Returns the refused ones and
        the applied ones."""
        known = {f["key"] for f in facts}
        refused: list[Rejected] = []
        applied: list[Event] = []
        for event in events:
            key = domain.fact_key(event.source, event.id)
            if key in known:
                continue  # a duplicate changes nothing
            error = self._refusal(mid, owner, event, (cycles or {}).get(event.key))
            error = error or _retraction_refusal(mid, event, facts)
            if error is not None:
                refused.append(Rejected(event, error))
                continue
            fact = domain.make_fact(type_=event.type, source=event.source, event_id=event.id, agency=event.agency,
                                    time=event.time, data=event.data_dict(), authority=event.extensions.get(AUTHORITY))
            size = domain.fact_size(fact)
            if (full := sizes.refusal(mid, fact, size)) is not None:
                refused.append(Rejected(event, EventError(domain.MILESTONE_FULL, full, event_id=event.id,
                                                          source=event.source)))
                continue
            sizes.add(fact, size)
            facts.append(fact)
            if event.type == MILESTONE_PLANNED:
                owner = domain.owner_of(f for f in facts if f["kind"] == "planned")[0]
            known.add(key)
            applied.append(event)
        return refused, applied

    @staticmethod
    def _refusal(mid: str, owner: str | None, event: Event, cycle: list[str] | None) -> EventError | None:
        """Why this event may not be applied to milestone `mid` owned by `owner`, or None."""
        if cycle is not None:
            return EventError(dependencies.CYCLE, f"milestone {mid!r} cannot depend on {cycle[1]!r}: that closes the "
                              f"cycle {' -> '.join(cycle)}", event_id=event.id, source=event.source)
        fact = {"kind": domain.FACT_KINDS[event.type], "agency": event.agency,
                "authority": event.extensions.get(AUTHORITY), "data": event.data_dict()}
        reason = domain.refusal(owner, fact)
        if reason == domain.ID_TAKEN:
            return EventError(reason, f"milestone id {mid!r} is already planned by agency {owner!r}; only the programme "
                              "office may re-plan it for another agency (choose another id)",
                              event_id=event.id, source=event.source)
        if reason is not None:
            return EventError(reason, f"milestone {mid!r} belongs to agency {owner!r}; {event.agency!r} may not report on it",
                              event_id=event.id, source=event.source)
        return None

    def _derive(self, mid: str, facts: list[dict[str, Any]], doc: Mapping[str, Any] | None, now: datetime,
                dep_status: Mapping[str, Mapping[str, Any]], sizes: domain.FactBytes) -> dict[str, Any]:
        """The milestone document from its facts; `sizes`: what they take (the caller knows whether they grew)."""
        # A dependency's risk that only comes back round a cycle through `mid` does not count (dependencies.py).
        projected = domain.project(mid, facts, now, dependencies.as_seen_from(mid, dep_status))
        by_dependency = dependencies.DEPENDENCY_REASON in projected["status_reasons"]
        projected["risk_roots"] = dependencies.risk_roots(mid, projected["blocked_by"], dep_status) if by_dependency else []
        previous_status = doc.get("status") if doc else None
        status_since = doc.get("status_since") if doc and previous_status == projected["status"] else now
        # When the facts last grew (they never shrink; null on records older than this field): alerts wait until
        # the facts have settled, so a burst arriving in any order raises what the whole burst calls for.
        same_facts = doc is not None and len(doc.get("facts", [])) == len(facts)
        facts_at = doc.get("facts_at") if same_facts else now
        return {"_id": mid, "facts": facts, **projected, "fact_bytes": sizes.as_field(),
                "status_since": status_since, "facts_at": facts_at, "updated_at": now,
                "created_at": doc.get("created_at", now) if doc else now}

    async def refresh(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """Recompute milestones whose status may have changed with time or a dependency (compare-and-set)."""

        async def derive(found: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
            dep_status = await self.repo.dependency_states({d for doc in found.values() if doc
                                                            for d in doc.get("depends_on", [])})
            now = self.clock()
            out: dict[str, dict[str, Any] | None] = {}
            for mid, doc in found.items():
                new_doc = (self._derive(mid, list(doc.get("facts", [])), doc, now, dep_status, domain.FactBytes.held(doc))
                           if doc else None)
                out[mid] = new_doc if new_doc is not None and _derived_differs(doc, new_doc) else None
            return out

        return await self.ledger.rewrite(MILESTONES, list(dict.fromkeys(ids)), derive)

    async def rebuild(self, abandoned_after: timedelta = JOURNAL_GRACE, progress: Callable[[int], None] | None = None,
                      cascade: bool = True) -> dict[str, int]:
        """Every milestone recomputed from the audit trail while the service runs (`newnormal roadmap rebuild`):
        milestone writes pause (`Ledger.paused`: a batch waits and goes on after), the roadmap events are replayed
        in time order through the rules a batch goes through (ownership, retractions, cycles against the graph the
        replay builds), dependency states are settled among the rebuilt milestones, and the stored milestones are
        brought to the rebuilt ones (`reconcile`: only the ones that differ are written). What a milestone did not
        get from its events (when it was first stored, since when its status holds) is kept from the live one.
        `cascade`: raise the alerts the rebuilt states call for now (the command line leaves them to the running
        service's rescan)."""
        async with self.ledger.paused(abandoned_after):
            reading = asyncio.ensure_future(read_all(self.ledger.store, MILESTONES))  # read while the replay computes
            try:
                docs, events = await self._replay_audit_trail(progress)
                live = await reading
            finally:
                reading.cancel()
            for mid, doc in docs.items():
                before = live.get(mid)
                if before is not None:
                    doc["created_at"] = before.get("created_at", doc["created_at"])
                    if before.get("status") == doc["status"]:
                        doc["status_since"] = before.get("status_since", doc["status_since"])
            await reconcile(self.ledger.store, MILESTONES, list(docs.values()), state=milestone_state, stored=live)
        if cascade:
            await self.after_change(list(docs.values()))  # alerts the rebuilt states call for (each once: claims)
        return {"events": len(events), "milestones": len(docs)}

    async def _replay_audit_trail(self, progress: Callable[[int], None] | None,
                                  ) -> tuple[dict[str, dict[str, Any]], list[Event]]:
        """The roadmap events of the audit trail (`progress(n)`: n more read), and the milestones they make. A record
        the contracts no longer take (stored under older rules) is left out and counted in the log: one old record
        never stops a rebuild, nor a startup's upgrade."""
        events: list[Event] = []
        unreadable = 0
        async for doc in self.repo.audit_events(ROADMAP_CONSUMED_TYPES):
            try:
                events.append(from_audit_record(doc))
            except EventError:
                unreadable += 1
            if progress is not None and (len(events) + unreadable) % 10_000 == 0:
                progress(10_000)
        if progress is not None:
            progress((len(events) + unreadable) % 10_000)
        if unreadable:
            log.warning("audit records the contracts no longer take were left out of the rebuild",
                        extra={"records": unreadable})
        events.sort(key=lambda e: (e.time, e.key))
        return await self._replay(events), events

    async def _replay(self, events: Sequence[Event]) -> dict[str, dict[str, Any]]:
        """Milestone documents from events in order, as batches of one would have made them (pure but for the
        clock): refusals decided against what came before, then dependency states settled among them."""
        graph: dict[str, list[str]] = {}

        async def replayed_edges(ids: set[str]) -> dict[str, list[str]]:
            return {i: graph[i] for i in ids if i in graph}

        now = self.clock()
        docs: dict[str, dict[str, Any]] = {}
        facts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        sizes: dict[str, domain.FactBytes] = defaultdict(domain.FactBytes)
        owners: dict[str, str | None] = {}
        underived: set[str] = set()
        for event in events:
            mid = event.data.milestone_id
            cycles = await self._cycles([event], replayed_edges)
            _refused, applied = self._admit(mid, facts[mid], owners.get(mid), [event], cycles, sizes[mid])
            if not applied:
                continue
            # Only a plan or a retraction changes whose the milestone is and what it depends on, which the next
            # events are judged by: derived at once. A report's fact is derived with the rest at the end (with `now`
            # fixed, deriving once from the final facts gives what deriving after each event would).
            if event.type in (MILESTONE_PLANNED, FACT_RETRACTED):
                docs[mid] = self._derive(mid, list(facts[mid]), None, now, {}, sizes[mid])
                owners[mid] = docs[mid].get("owner_agency")
                graph[mid] = list(docs[mid].get("depends_on", []))
                underived.discard(mid)
            else:
                underived.add(mid)
        for mid in underived:
            docs[mid] = self._derive(mid, list(facts[mid]), None, now, {}, sizes[mid])
        for _level in range(len(docs) + 1):  # a dependency's state flows on, one level per round (acyclic: enough)
            states = {mid: {k: d[k] for k in ("status", "status_reasons", "risk_roots") if k in d}
                      for mid, d in docs.items()}
            settled = True
            for mid, doc in docs.items():
                if doc.get("depends_on"):
                    new_doc = self._derive(mid, list(doc["facts"]), doc, now, states, sizes[mid])
                    if _derived_differs(doc, new_doc):
                        docs[mid], settled = new_doc, False
            if settled:
                break
        return docs

    async def after_change(self, changed: list[dict[str, Any]]) -> None:
        """Cascade to dependants, raise the alerts the new states call for, wake the watcher."""
        if not changed:
            return
        all_changed = list(changed)
        # Any depth, one level per round trip: refresh the dependants of what changed, until nothing changes.
        walk = dependencies.Propagation(d["_id"] for d in changed)
        while not walk.done:
            dependants = await self.repo.dependants(walk.frontier)
            refreshed = await self.refresh(dependants) if dependants else []
            all_changed.extend(refreshed)
            walk.advance(d["_id"] for d in refreshed)
        if walk.frontier:
            log.warning("dependency cascade stopped at its level bound (a cycle?)",
                        extra={"levels": walk.levels, "milestones": len(walk.seen)})
        latest: dict[str, dict[str, Any]] = {d["_id"]: d for d in all_changed}
        for doc in latest.values():
            deadline = doc.get("open_deadline")
            if deadline is not None and (self._next_deadline is None or deadline < self._next_deadline):
                self._next_deadline = deadline
        await self.raise_alerts(latest.values())
        self.wake.set()
        self.stats_dirty.set()

    # --- alerts ------------------------------------------------------------------------------
    async def raise_alerts(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Publish, once each, the alerts the milestones' facts call for (`domain.alerts_due`: a function of the
        facts, so arrival order cannot add one), for each milestone whose record has settled (`_ready_at`); an
        unsettled one is held and raised from its fresh record by `raise_settled`."""
        now = self.clock()
        wanted: list[tuple[str, str, Mapping[str, Any]]] = []
        for doc in docs:
            due = domain.alerts_due(doc)
            if not due or not doc.get("owner_agency") or not doc.get("workstream"):
                continue
            ready_at = self._ready_at(doc)
            if ready_at > now:
                self._settling[doc["_id"]] = min(ready_at, self._settling.get(doc["_id"], ready_at))
                continue
            wanted.extend((kind, day, doc) for kind, day in due)
        already = await self.repo.claimed_ids(domain.alert_id(k, d["_id"], day) for k, day, d in wanted)
        published = 0
        for kind, day, doc in wanted:
            if domain.alert_id(kind, doc["_id"], day) not in already:
                published += await self._claim_and_publish(kind, doc, day)
        return published

    def _ready_at(self, doc: Mapping[str, Any]) -> datetime:
        """When the milestone's alerts may go out: `alert_settle_seconds` after its facts last grew, and, while a
        dependency holds it at risk (another milestone's facts, possibly still arriving), after its status last
        changed. A deadline passing is not a change of facts: a missed alert is not delayed by it."""
        marks = [doc.get("facts_at")] + ([doc.get("status_since")] if doc.get("blocked_by") else [])
        latest = max((_aware(m) for m in marks if m is not None), default=None)
        return _EPOCH if latest is None else latest + timedelta(seconds=self.settings.alert_settle_seconds)

    async def raise_settled(self) -> int:
        """Raise the alerts held while their milestones' facts settled, from the records as they are now."""
        now = self.clock()
        ids = [mid for mid, at in self._settling.items() if at <= now]
        for mid in ids:
            del self._settling[mid]
        return await self.raise_alerts((await self.repo.load_many(ids)).values()) if ids else 0

    async def _claim_and_publish(self, kind: str, doc: Mapping[str, Any], due_date: str) -> int:
        detected = self.clock()
        event = make_event(ALERT_TYPES[kind], domain.alert_data(kind, doc, detected, due_date),
                           agency=doc["owner_agency"], source=WATCHER_SOURCE, id=domain.alert_id(kind, doc["_id"], due_date),
                           time=detected, subject=doc["_id"], partitionkey=doc["_id"])
        claim = {"_id": event.id, "state": "claimed", "kind": kind, "milestone_id": doc["_id"],
                 "due_date": due_date, "claimed_at": self.lease_clock(), "event": event.to_json_dict()}
        if not await self.repo.claim(claim):
            return 0  # another replica claimed it and publishes it
        on_time = kind == "missed" and due_date == doc.get("due_date")  # the watcher's deadline: measure the delay
        return await self._publish_claimed(event, doc.get("deadline") if on_time else None)

    async def _publish_claimed(self, event: Event, deadline: datetime | None = None) -> int:
        try:
            await self.publisher.publish(event)
        except Exception as exc:
            log.warning("alert publish failed; the rescan will retry", extra={"alert_id": event.id, "error": repr(exc)[:200]})
            return 0
        await self.repo.mark_published(event.id, self.lease_clock())
        self.metrics.alerts.labels(event.type).inc()
        if deadline is not None:
            self.metrics.alert_delay.observe(max(0.0, (self.clock() - _aware(deadline)).total_seconds()))
        log.info("roadmap alert published", extra={"alert_id": event.id, "type": event.type, "agency": event.agency})
        return 1

    async def republish_stale_claims(self) -> int:
        """A replica that crashed between claim and publish left a `claimed` record: send it now."""
        now = self.lease_clock()
        count = 0
        for claim in await self.repo.stale_claims(now - timedelta(seconds=self.settings.alert_claim_stale_seconds)):
            if not await self.repo.retake_claim(claim["_id"], claim["claimed_at"], now):
                continue
            count += await self._publish_claimed(from_audit_record(claim["event"]))
        return count

    # --- deadline watcher --------------------------------------------------------------------
    async def sweep(self) -> int:
        """Mark open milestones whose deadline passed as missed, with their alerts. Returns how many."""
        started = time.perf_counter()
        total = 0
        while True:
            ids = await self.repo.overdue_open(self.clock())
            if not ids:
                break
            changed = await self.refresh(ids)
            total += len(changed)
            await self.after_change(changed)
            if len(ids) < 500 or not changed:
                break
        self.metrics.scan_seconds.labels("sweep").observe(time.perf_counter() - started)
        return total

    async def rescan(self) -> dict[str, int]:
        """The safety net: overdue sweep, alerts for every risky state, stale claims, figures."""
        started = time.perf_counter()
        missed = await self.sweep()
        await self.ledger.sweep(JOURNAL_GRACE)  # journal entries a roadmap process left when it died
        alerts = await self.raise_alerts(await self.repo.needing_alerts())
        republished = await self.republish_stale_claims()
        await self.refresh_stats()
        self.metrics.scan_seconds.labels("rescan").observe(time.perf_counter() - started)
        return {"missed": missed, "alerts": alerts, "republished": republished}

    async def watch_once(self) -> NextRun:
        """One pass of the deadline watcher (run by Runtime.every, woken by `wake`): the rescan when it is due,
        else a sweep; then sleep until the next deadline, the next rescan or the longest tick, whichever is first."""
        # Monotonic time paces the rescan period: it is a duration, not a "now" of the domain.
        if time.monotonic() >= self._next_rescan:
            await self.rescan()
            self._next_rescan = time.monotonic() + self.settings.watcher_rescan_seconds
            self._next_known = False
        else:
            await self.sweep()
        await self.raise_settled()
        now = self.clock()
        if not self._next_known or (self._next_deadline is not None and self._next_deadline <= now):
            self._next_deadline = await self.repo.next_deadline(now)
            self._next_known = True
        deadline = self._next_deadline
        wait = min(self.settings.watcher_max_tick_seconds, max(0.0, self._next_rescan - time.monotonic()))
        if deadline is not None:
            wait = min(wait, max(0.0, (_aware(deadline) - self.clock()).total_seconds()))
        if self._settling:
            wait = min(wait, max(0.0, (min(self._settling.values()) - self.clock()).total_seconds()))
        return NextRun(wait)

    async def refresh_stats_after_change(self) -> None:
        """Recompute the summary figures (run by Runtime.every when `stats_dirty` is set), at most once per
        `stats_refresh_seconds`: changes during the pause set `stats_dirty` again and are taken by the next pass."""
        try:
            await self.refresh_stats()
        except Exception:
            self.stats_dirty.set()
            raise
        finally:
            await asyncio.sleep(self.settings.stats_refresh_seconds)

    # --- reads (the HTTP routes' one call each) ----------------------------------------------
    async def list_milestones(self, where: MilestoneFilter, *, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        """The total matching `where` and one page of it, by deadline."""
        return await self.repo.count(where), await self.repo.find(where, limit=limit, skip=offset)

    async def schedule_changes(self, owner: str | None, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """Milestones whose due date moved (of `owner`): how many, and the `limit` largest slips first."""
        rows = [domain.schedule_change(d) for d in await self.repo.schedule_changes(owner)]
        rows.sort(key=lambda r: (-r["variance_days"], r["milestone_id"]))
        return len(rows), rows[:limit]

    async def milestone(self, milestone_id: str, principal: Principal) -> dict[str, Any] | None:
        """None also for another agency's milestone: its existence is not revealed."""
        doc = await self.repo.get(milestone_id)
        return doc if doc is not None and principal.may_see(doc.get("owner_agency")) else None

    async def summary(self, next_due_owner: str | None) -> dict[str, Any]:
        """Programme-wide counts and confidence (national totals) with the rule's text, and the next due
        milestones of `next_due_owner` (None: all): those name milestones, so an agency sees only its own."""
        stats = await self.repo.read_stats()
        if stats is None:
            stats = await self.refresh_stats()
        stats = {k: v for k, v in stats.items() if k != "_id"}
        stats["rule"] = CONFIDENCE_RULE
        stats["next_due_agency"] = next_due_owner
        # The nearest deadlines from the owner's overview snapshot (kept current with these figures); an owner
        # without one yet, or none at all, is asked of the database.
        snapshot = await self.repo.read_overview_snapshot(next_due_owner or overview.ALL, ["next_due"])
        stats["next_due"] = (snapshot["next_due"] if snapshot is not None and "next_due" in snapshot
                             else await self.repo.next_due(overview.NEXT_DUE, next_due_owner))
        return stats

    # --- figures -----------------------------------------------------------------------------
    async def refresh_stats(self) -> dict[str, Any]:
        """The summary figures and the overview snapshots, recomputed from every milestone."""
        started = time.perf_counter()
        stats = compute_stats(await self.repo.tallies(), await self.repo.missed_due_dates(), self.clock())
        stats["milestones_with_unknown_dependencies"] = await self.repo.count_unknown_dependencies()
        await self.repo.write_stats(stats)
        await overview.refresh_snapshots(self.repo, self.clock())
        self.metrics.figures_refresh_seconds.observe(time.perf_counter() - started)
        return stats


_VOLATILE = BOOKKEEPING | {"version", "updated_at", "status_since", "facts_at", "created_at", "facts", "_id"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _retraction_refusal(mid: str, event: Event, facts: Sequence[Mapping[str, Any]]) -> EventError | None:
    """Why a retraction may not be stored (decidable now: its namespace, or the target already among the facts)."""
    if event.type != FACT_RETRACTED:
        return None
    retraction = domain.make_fact(type_=event.type, source=event.source, event_id=event.id, agency=event.agency,
                                  time=event.time, data=event.data_dict(), authority=event.extensions.get(AUTHORITY))
    target_key = corrections.target_key(retraction)
    reason = corrections.refusal(retraction, next((f for f in facts if f["key"] == target_key), None))
    if reason is None:
        return None
    detail = (f"event {target_key!r} of milestone {mid!r} is itself a retraction: re-send the fact under a new id instead"
              if reason == corrections.RETRACTION_OF_RETRACTION else
              f"agency {event.agency!r} may retract only its own facts (source under /agencies/{event.agency}/)")
    return EventError(reason, detail, event_id=event.id, source=event.source)


def milestone_state(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a milestone document says, as stored: its facts are a set (arrival order live, time order rebuilt), and
    when it was last written (`updated_at`) or its facts last grew (`facts_at`) is the history of its writes."""
    state = {k: v for k, v in stored_state(doc).items() if k not in ("updated_at", "facts_at")}
    state["facts"] = sorted(state.get("facts", []), key=lambda f: f["key"])
    return state


def _derived_differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return any(as_stored(old.get(k)) != as_stored(v) for k, v in new.items() if k not in _VOLATILE)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
