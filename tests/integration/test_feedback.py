"""Feedback service over the real broker and database: HTTP and Kafka intake agree in /v1/experience and
/metrics, personal data never reaches MongoDB, downstream Kafka or logs, rate limiting, and rollups that
equal a full recount after redelivery and crashes."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import UTC, date, datetime

import pytest
from ledger_fakes import CrashingStore
from support import cloudevent, db_of, make_key, poll, produce_events, read_topic, running

from services.common.ledger_mongo import MongoLedgerStore
from services.common.logging import JsonFormatter
from services.contracts import topics
from services.contracts.envelope import document_id, make_event
from services.contracts.thai_calendar import ascii_to_thai_digits, thai_digits_to_ascii
from services.feedback.adapters import FeedbackRepository
from services.feedback.domain import prepare
from services.feedback.main import create_app
from services.feedback.settings import FeedbackSettings

pytestmark = pytest.mark.integration

TYPE = "feedback.response.submitted"
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
NID = "1103702071927"  # checksum-valid
NID2 = "3100501234563"
# Personal data the comments carry, in the forms a search would find them.
SECRETS = [NID, NID2, "0812345678", "081-234-5678", "0891112222", "somchai.j@gmail.com", "malee@hotmail.com",
           "1234567890", "+66812345678"]


def form(**extra):
    body = {"agency": "dga", "service_name": "ต่ออายุใบอนุญาต", "channel": "online_web", "age_group": "60_plus",
            "satisfaction": 2, "tech_difficulty": "severe", "aware_of_digital_channels": False,
            "submitted_at": "2026-03-15T09:30:00+07:00"}
    body.update(extra)
    return body


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter("feedback"))
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def _contains_secret(text: str) -> list[str]:
    flat = thai_digits_to_ascii(text)
    return [s for s in SECRETS if s in flat]


async def _metric_sum(client, name: str, **labels) -> float:
    text = (await client.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_http_and_kafka_agree_and_personal_data_never_lands(settings_for):
    settings = settings_for(FeedbackSettings, feedback_rate_burst=8, feedback_rate_per_second=0.5,
                            feedback_gap_min_cell=30)
    ticks = [1000.0]
    app = create_app(settings, clock=lambda: NOW, monotonic=lambda: ticks[0])
    key = await make_key(settings, "dga")
    kiosk = await make_key(settings, "dga", "survey")
    office = {"x-api-key": await make_key(settings, "opdc", "programme_office")}  # reads unsuppressed figures
    db = db_of(settings)
    capture = Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        async with running(app) as client:
            # --- HTTP: plain form submissions with personal data in the comment, birth years (CE and BE).
            http_forms = [
                form(comment=f"เลขบัตร {NID} โทร 081-234-5678 ช่วยด้วยค่ะ"),
                form(comment="ส่งอีเมล somchai.j@gmail.com แล้ว", age_group=None, birth_year=2505),  # 1962 -> 60_plus
                form(comment="บัญชี 1234567890 ยังไม่ได้เงินคืน", satisfaction=5, tech_difficulty="none",
                     aware_of_digital_channels=True, channel="mobile_app", age_group=None, birth_year=1995),  # 25_34
                form(comment="ขอบคุณ 30/09/2569 ค่าธรรมเนียม 1,500 บาท", satisfaction=4, channel="walk_in"),
            ]
            ids = []
            for body in http_forms:
                body = {k: v for k, v in body.items() if v is not None}
                resp = await client.post("/v1/responses", json=body, headers={"x-api-key": key})
                assert resp.status_code == 202, resp.text
                ids.append(resp.json()["id"])
            assert len(set(ids)) == 4
            # Bad input: 400 with a reason, another agency 403, no key 401.
            resp = await client.post("/v1/responses", json=form(satisfaction=9), headers={"x-api-key": key})
            assert resp.status_code == 400 and resp.json()["reason"] == "invalid_data" and "satisfaction" in resp.json()["detail"]
            resp = await client.post("/v1/responses", json=form(agency="rd"), headers={"x-api-key": key})
            assert resp.status_code == 403 and resp.headers["content-type"].startswith("application/problem+json")
            assert (await client.post("/v1/responses", json=form())).status_code == 401

            # --- Kafka: an agency publishing directly, with Thai digits, a redelivered record, and a gap cell.
            direct = [cloudevent(TYPE, dict(form(comment=f"โทร {ascii_to_thai_digits('0891112222')} ค่ะ "
                                                        f"บัตร {ascii_to_thai_digits(NID2)}"), submitted_at="2026-03-16T10:00:00+07:00"),
                                 agency="dga", source="/agencies/dga/kiosk")]
            direct.append(cloudevent(TYPE, form(comment="mail malee@hotmail.com or +66812345678", channel="call_center",
                                                satisfaction=3, age_group="35_44"), agency="dga", source="/agencies/dga/kiosk"))
            # 40 older citizens online with low satisfaction, 160 others mostly satisfied: a significant gap.
            for i in range(40):
                direct.append(cloudevent(TYPE, form(satisfaction=2 if i % 4 else 4), agency="dga", source="/agencies/dga/kiosk"))
            for i in range(160):  # ease answered by 120 (3 of 4: 4, 5, 2), trust by 80 (every other: 5 or 1)
                items = {**({"ease": (4, 5, 2)[i % 4 - 1]} if i % 4 else {}), **({} if i % 2 else {"trust": 1 if i % 10 == 0 else 5})}
                direct.append(cloudevent(TYPE, form(age_group="25_34", channel="mobile_app", satisfaction=5 if i % 5 else 3,
                                                    tech_difficulty="none", aware_of_digital_channels=True, **items),
                                         agency="dga", source="/agencies/dga/kiosk"))
            await produce_events(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, direct)
            await produce_events(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, direct[:5])  # redelivery
            expected = 4 + len(direct)
            await poll(lambda: _eq(db.events.count_documents({}), expected), timeout=40, what="all stored")

            # --- /v1/experience agrees with what was sent (each response counted once). A batch's rollups are
            # written after its responses: wait until they are counted, not merely stored.
            async def counted():
                got = await client.get("/v1/experience", params={"from": "2026-03-01", "to": "2026-03-31"}, headers=office)
                return got.json()["overall"].get("responses") == expected

            await poll(counted, timeout=40, what="all counted in the rollups")
            resp = await client.get("/v1/experience", params={"from": "2026-03-01", "to": "2026-03-31"}, headers=office)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            cells = {(c["age_group"], c["channel"]): c for c in body["cells"]}
            assert body["overall"]["responses"] == expected
            older_online = cells[("60_plus", "online_web")]
            # HTTP: 2 older online (one by birth year) + Kafka: 1 + 40.
            assert older_online["responses"] == 43 and older_online["cohort"] == "baby_boomer"
            assert older_online["share_tech_difficulty"] == 1.0 and older_online["awareness_rate"] == 0.0
            assert older_online["satisfaction_levels"] == {"1": 0, "2": 2 + 1 + 30, "3": 0, "4": 10, "5": 0}
            assert cells[("25_34", "mobile_app")]["responses"] == 161  # 160 Kafka + 1 HTTP by birth year 1995
            assert cells[("60_plus", "walk_in")]["mean_satisfaction"] == 4.0
            # Ease and trust: over the responses that answered them, the way satisfaction is reported.
            young_app = cells[("25_34", "mobile_app")]
            assert young_app["ease_responses"] == 120 and young_app["ease_levels"] == {"1": 0, "2": 40, "3": 0, "4": 40, "5": 40}
            assert young_app["mean_ease"] == round((2 + 4 + 5) * 40 / 120, 3) and young_app["share_ease_agree"] == round(80 / 120, 4)
            assert young_app["trust_responses"] == 80 and young_app["mean_trust"] == round((16 * 1 + 64 * 5) / 80, 3)
            assert young_app["share_trust_agree"] == 0.8 and older_online["mean_trust"] is None
            assert body["overall"]["ease_responses"] == 120 and body["overall"]["mean_trust"] == young_app["mean_trust"]
            assert body["period_th"].startswith("1 มี.ค.") or "2569" in body["period_th"]
            assert (await client.get("/v1/experience", params={"from": "2026-03-17", "to": "2026-03-31"},
                                     headers=office)).json()["cells"] == []
            assert (await client.get("/v1/experience", params={"agency": "rd", "from": "2026-03-01", "to": "2026-03-31"},
                                     headers=office)).json()["overall"]["responses"] == 0
            # Default range: the last 30 Bangkok days of the injected clock (20 Mar) covers 15-16 Mar.
            assert (await client.get("/v1/experience", headers=office)).json()["overall"]["responses"] == expected
            bad = await client.get("/v1/experience", params={"from": "2026-03-31", "to": "2026-03-01"}, headers=office)
            assert bad.status_code == 400 and bad.json()["reason"] == "invalid_range"
            assert (await client.get("/v1/experience", params={"from": "31/03/2026"}, headers=office)).status_code == 400

            gaps = (await client.get("/v1/experience/gaps", params={"from": "2026-03-01", "to": "2026-03-31"},
                                     headers=office)).json()
            assert [(g["age_group"], g["channel"]) for g in gaps["gaps"]] == [("60_plus", "online_web")]
            assert gaps["gaps"][0]["z"] < 0 and gaps["gaps"][0]["p_value"] < gaps["test"]["alpha_per_cell"]
            assert gaps["test"]["min_cell_responses"] == 30 and gaps["test"]["cells_too_small"] >= 2

            # --- /metrics agrees with /v1/experience.
            assert await _metric_sum(client, "newnormal_feedback_responses_total") == expected
            assert await _metric_sum(client, "newnormal_feedback_responses_total", channel="online_web", age_group="60_plus") == 43
            assert await _metric_sum(client, "newnormal_feedback_satisfaction_bucket", channel="online_web",
                                     age_group="60_plus", le="2.0") == 33
            assert await _metric_sum(client, "newnormal_feedback_satisfaction_count", channel="online_web", age_group="60_plus") == 43
            assert await _metric_sum(client, "newnormal_feedback_tech_difficulty_total", level="severe") == \
                sum(c["responses"] * c["share_tech_difficulty"] for c in body["cells"]) - \
                await _metric_sum(client, "newnormal_feedback_tech_difficulty_total", level="some")
            assert await _metric_sum(client, "newnormal_feedback_aware_total", age_group="25_34") == 161
            assert await _metric_sum(client, "newnormal_feedback_trust_count") == 80
            assert await _metric_sum(client, "newnormal_feedback_trust_sum") == 16 * 1 + 64 * 5
            assert await _metric_sum(client, "newnormal_feedback_ease_bucket", le="3.0") == 40

            # --- Rate limiting: the bucket of a key empties (clock frozen), 429 + Retry-After, another key unaffected.
            statuses = []
            for _ in range(9):
                r = await client.post("/v1/responses", json=form(satisfaction=1, channel="mobile_unit"), headers={"x-api-key": kiosk})
                statuses.append(r.status_code)
            assert statuses == [202] * 8 + [429]
            assert r.headers["retry-after"] == "2" and r.json()["reason"] == "rate_limited"
            assert r.headers["content-type"].startswith("application/problem+json")
            assert (await client.post("/v1/responses", json=form(channel="mobile_unit"), headers={"x-api-key": key})).status_code == 202
            ticks[0] += 2.0
            assert (await client.post("/v1/responses", json=form(channel="mobile_unit"), headers={"x-api-key": kiosk})).status_code == 202
            await poll(lambda: _eq(db.events.count_documents({"data.channel": "mobile_unit"}), 10), timeout=30,
                       what="rate-limited intake stored")

            # --- Survey page.
            page = await client.get("/survey/dga", params={"key": "kiosk-key-123", "channel": "walk_in"})
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            html = page.text
            assert html.index("แบบสอบถาม") < html.index("Service satisfaction survey")
            assert 'fetch("/v1/responses"' in html and 'data-key="kiosk-key-123"' in html and "min-height: 56px" in html
            assert page.headers["referrer-policy"] == "no-referrer"
            assert (await client.get("/survey/nope")).status_code == 404
            # The page carries survey keys only: an agency key in a public URL is refused, not served.
            assert (await client.get("/survey/dga", params={"key": kiosk})).status_code == 200
            leaked = await client.get("/survey/dga", params={"key": key})
            assert leaked.status_code == 403 and leaked.json()["reason"] == "survey_key_required" and key not in leaked.text

            # --- Personal data: nowhere in MongoDB, in the topic downstream of HTTP intake, the DLQ, or the logs.
            stored = await db.events.find_one({"id": ids[0]})
            assert stored["data"]["comment"] == "เลขบัตร [REDACTED:NATIONAL_ID] โทร [REDACTED:PHONE] ช่วยด้วยค่ะ"
            assert stored["redactions"] == {"NATIONAL_ID": 1, "PHONE": 1} and "birth_year" not in stored["data"]
            assert stored["_id"] == document_id(stored["source"], ids[0])  # the audit record is the response
            kafka_direct = await db.events.find_one({"id": direct[0]["id"]})
            assert kafka_direct["redactions"] == {"NATIONAL_ID": 1, "PHONE": 1}
            for name in await db.list_collection_names():
                async for doc in db[name].find({}):
                    assert not _contains_secret(json.dumps(doc, default=str, ensure_ascii=False)), (name, doc)
                    assert "birth_year" not in json.dumps(doc, default=str)
            records = await read_topic(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS)
            survey = [r for r in records if b"/agencies/dga/survey" in r.value]
            assert len(survey) == 4 + 8 + 2
            for r in survey:
                assert not _contains_secret(r.value.decode()) and b"birth_year" not in r.value
            dlq = await read_topic(settings.kafka_bootstrap_servers, topics.dlq(topics.FEEDBACK_EVENTS), timeout=2)
            assert dlq == []
            logged = "\n".join(capture.lines)
            assert "feedback batch stored" in logged
            assert not _contains_secret(logged)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
        await db.client.close()


async def _eq(awaitable, expected):
    return (await awaitable) == expected


def _events(n: int, start: int = 0, agency: str = "dga"):
    out = []
    for i in range(start, start + n):
        data = form(satisfaction=1 + i % 5, channel=["online_web", "walk_in", "call_center"][i % 3],
                    age_group=["18_24", "45_59", "60_plus"][i % 3], tech_difficulty=["none", "some", "severe"][i % 3],
                    aware_of_digital_channels=bool(i % 2), submitted_at=f"2026-03-{1 + i % 28:02d}T23:30:00+07:00",
                    comment=f"โทร 08{i % 10}-234-5678", agency=agency,
                    **({"ease": 1 + i % 5} if i % 4 else {}), **({"trust": 5 - i % 5} if i % 3 else {}))
        out.append(prepare(make_event(TYPE, data, agency=agency, source=f"/agencies/{agency}/kiosk", id=f"r-{i}", time=datetime.now(UTC))))
    return out


async def test_concurrent_writers_count_each_response_once_and_all_agencies_add_up(settings_for):
    """Replicas racing on the same rollup documents (compare-and-set retries), with overlapping batches."""
    settings = settings_for(FeedbackSettings)
    db = db_of(settings)
    repos = [FeedbackRepository(db, clock=lambda: NOW) for _ in range(4)]
    await repos[0].ensure_indexes()
    try:
        events = _events(240) + _events(120, 0, agency="rd")
        random.Random(5).shuffle(events)
        chunks = [events[i:i + 45] + events[i + 45:i + 55] for i in range(0, len(events), 45)]  # 10 shared with the next
        stored = await asyncio.gather(*(repos[i % 4].store(chunk) for i, chunk in enumerate(chunks)))
        assert sum(len(s) for s in stored) == 360 == len(set().union(*stored))
        assert await repos[0].rollup_differences() == []
        assert await repos[0].journal.count_documents({}) == 0
        start, end = date(2026, 3, 1), date(2026, 3, 31)
        everyone = await repos[0].daily_cells(start, end, None)
        dga, rd = await repos[0].daily_cells(start, end, "dga"), await repos[0].daily_cells(start, end, "rd")
        assert sum(c["responses"] for c in everyone.values()) == 360
        for cell, counts in everyone.items():
            for name, value in counts.items():
                assert value == dga.get(cell, {}).get(name, 0) + rd.get(cell, {}).get(name, 0), (cell, name)
        # The whole of March is read as its month rollups; read day by day (a database from before them,
        # `months` not marked), every cell is the same. A partial range reads its days.
        assert await repos[0].months_kept()
        legacy = FeedbackRepository(db, clock=lambda: NOW)
        await legacy.state.delete_many({})
        for who, by_months in ((None, everyone), ("dga", dga), ("rd", rd)):
            assert await legacy.daily_cells(start, end, who) == by_months
        assert not await legacy.months_kept()
        part = await repos[0].daily_cells(date(2026, 2, 20), date(2026, 3, 10), "dga")
        assert part == await legacy.daily_cells(date(2026, 3, 1), date(2026, 3, 10), "dga") and part
    finally:
        await db.client.close()


async def test_rollups_equal_recount_after_redelivery_and_crashes(settings_for):
    settings = settings_for(FeedbackSettings)
    db = db_of(settings)
    repo = FeedbackRepository(db, clock=lambda: NOW)
    await repo.ensure_indexes()
    try:
        a, b, c, d, e = _events(60), _events(40, 60), _events(30, 100), _events(25, 130), _events(20, 155)
        assert len(await repo.store(a)) == 60

        async def crash(events, at: int) -> None:
            """A replica whose process dies at the write path's call `at` (0 opens the journal entry, 1 stores the
            responses, 2-3 read and write the totals, 4-5 the day and month rollups, 6 closes the entry)."""
            dying = FeedbackRepository(db, clock=lambda: NOW, store=CrashingStore(MongoLedgerStore(db), at=at))
            with pytest.raises(RuntimeError):
                await dying.store(events)

        await crash(b, at=2)                   # crash after the responses were stored, before any rollup
        await crash(c, at=4)                   # crash with the totals rolled up and the daily rollups not
        await crash(d, at=6)                   # crash after both rollups, before the journal is closed
        assert await repo.store(a) == set()        # redelivery of a finished batch
        assert await repo.store(b[:10] + e) == {x.key for x in e}  # redelivery in another batch composition: only e is new
        assert await repo.store(c + d) == set()
        assert len(await repo.rollup_differences()) > 0  # b, c's daily part and nothing of d yet... not exact
        assert await repo.journal.count_documents({}) == 3
        assert await repo.sweep(grace_seconds=60) == 0   # a live replica's batch in flight is left alone
        assert await repo.sweep(grace_seconds=0) == 3
        assert await repo.sweep(grace_seconds=0) == 0
        assert await repo.rollup_differences() == []
        totals = await repo.totals_documents()
        assert sum(t["responses"] for t in totals) == 175 == await db.events.count_documents({})
        assert await db.events.count_documents({"data.comment": {"$regex": "08"}}) == 0
        # Ease and trust roll up exactly once too: equal to the stored responses' answers.
        answers = {item: [d["data"][item] async for d in db.events.find({f"data.{item}": {"$exists": True}})]
                   for item in ("ease", "trust")}
        for item, given in answers.items():
            assert sum(t.get(f"{item}_sum", 0) for t in totals) == sum(given) and given
            assert sum(t.get(f"{item}_{level}", 0) for t in totals for level in range(1, 6)) == len(given)
        fields = ("responses", "satisfaction_sum", "ease_sum", "ease_5", "trust_sum", "trust_1")
        before = sorted((t["_id"], *(t.get(f, 0) for f in fields)) for t in totals)
        result = await repo.recount()
        assert result["responses"] == 175
        assert sorted((t["_id"], *(t.get(f, 0) for f in fields)) for t in await repo.totals_documents()) == before
        assert await repo.rollup_differences() == []
        assert await repo.store(b) == set() and await repo.rollup_differences() == []  # still idempotent after a recount
    finally:
        await db.client.close()


async def test_an_agency_reader_gets_ease_and_trust_suppressed_by_their_own_answer_counts(settings_for):
    """A cell big enough to publish may hold few answers to an optional item: those answers (and a complement)
    are hidden from an agency reader, the programme office sees them all."""
    settings = settings_for(FeedbackSettings, feedback_min_published_cell=10)
    app = create_app(settings, clock=lambda: NOW)
    dga = {"x-api-key": await make_key(settings, "dga")}
    office = {"x-api-key": await make_key(settings, "opdc", "programme_office")}
    db = db_of(settings)
    repo = FeedbackRepository(db, clock=lambda: NOW)
    # 3 cells of 20 responses: trust answered by 2, 9 and 20 of them; ease by all.
    cells = [("online_web", "60_plus", 2), ("walk_in", "45_59", 9), ("mobile_app", "25_34", 20)]
    events = []
    for channel, age_group, trusting in cells:
        for i in range(20):
            # February: this module's broker still holds the March responses of the tests before, and this app's
            # consumer reads the topic from the start, so they may join this database at any moment.
            data = form(channel=channel, age_group=age_group, ease=4, agency="dga", submitted_at="2026-02-15T09:30:00+07:00",
                        **({"trust": 1} if i < trusting else {}))
            events.append(prepare(make_event(TYPE, data, agency="dga", source="/agencies/dga/kiosk",
                                             id=f"{channel}-{age_group}-{i}",
                                             time=datetime.now(UTC))))
    try:
        async with running(app) as client:
            await repo.store(events)
            params = {"from": "2026-02-01", "to": "2026-02-28", "agency": "dga"}
            seen = (await client.get("/v1/experience", params=params, headers=dga)).json()
            by_cell = {(c["channel"], c["age_group"]): c for c in seen["cells"]}
            assert all(c["responses"] == 20 and c["mean_ease"] == 4.0 and not c["suppressed"] for c in seen["cells"])
            # 2 answers hidden, and the next smallest (9) with them: the overall minus the rest gives 11, not 2.
            assert [by_cell[(ch, a)]["mean_trust"] for ch, a, _ in cells] == [None, None, 1.0]
            assert by_cell[("online_web", "60_plus")]["trust_responses"] is None
            assert seen["overall"]["trust_responses"] == 31 and seen["overall"]["mean_trust"] == 1.0
            assert seen["suppression"]["items"]["trust"] == {"suppressed_cells": 2, "overall_suppressed": False}
            everything = (await client.get("/v1/experience", params=params, headers=office)).json()
            assert [c["trust_responses"] for c in everything["cells"]] != [] and \
                {(c["channel"], c["age_group"]): c["trust_responses"] for c in everything["cells"]} == \
                {(ch, a): n for ch, a, n in cells}
    finally:
        await db.client.close()
