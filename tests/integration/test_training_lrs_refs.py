"""StatementRef filter-through over the real broker and database (xAPI 1.0.3 Communication 2.1.3 "Filter
Conditions for StatementRefs"): a statement targeting another meets agent/verb/activity filters when its target
does, the voided target itself is left out, a target arriving after its referrers backfills them, and another
agency's statement lends nothing."""

from __future__ import annotations

import json
import uuid

import pytest
from support import db_of, make_key, poll, running

from services.training import xapi
from services.training.main import create_app
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration

XAPI = {xapi.VERSION_HEADER: "1.0.3"}


def uid() -> str:
    return str(uuid.uuid4())


def st(sid: str, actor: str, verb: str, obj: dict) -> dict:
    return {"id": sid, "actor": {"mbox": f"mailto:{actor}@dga.or.th"}, "verb": {"id": verb}, "object": obj}


def ref(target: str) -> dict:
    return {"objectType": "StatementRef", "id": target}


async def test_statement_ref_filter_through(settings_for):
    settings = settings_for(TrainingSettings, learner_hmac_secret="lrs-statement-refs-secret")
    app = create_app(settings)
    dga = {**XAPI, "X-API-Key": await make_key(settings, "dga")}
    rd = {**XAPI, "X-API-Key": await make_key(settings, "rd")}
    run = uuid.uuid4().hex[:8]  # verbs, activities and actors of this run only
    watched, liked, noted, v_late = (f"http://lms.dga.or.th/verbs/{run}/{n}" for n in ("watched", "liked", "noted", "late"))
    course = {"id": f"https://lms.dga.or.th/{run}/video"}
    a, voiding, c, d, e, f, g, other = (uid() for _ in range(8))
    async with running(app) as client:
        async def post(statement: dict, headers: dict = dga) -> None:
            r = await client.post("/xapi/statements", json=statement, headers=headers)
            assert r.status_code == 200, r.text

        async def ids(headers: dict = dga, **params) -> set[str]:
            r = await client.get("/xapi/statements", params=params, headers=headers)
            assert r.status_code == 200, r.text
            return {s["id"] for s in r.json()["statements"]}

        # a, voided by `voiding`; c targets a; d targets c (a chain of two).
        await post(st(a, f"ann-{run}", watched, course))
        await post({**st(voiding, f"admin-{run}", xapi.VERB_VOIDED, ref(a))})
        await post(st(c, f"bob-{run}", liked, ref(a)))
        await post(st(d, f"cat-{run}", noted, ref(c)))
        # The answer to POST comes after the statement is stored: readable at once, no waiting needed.
        assert await ids(verb=watched) == {voiding, c, d}  # a itself is voided: left out
        assert await ids(activity=course["id"]) == {voiding, c, d}
        assert await ids(agent=json.dumps({"mbox": f"mailto:ann-{run}@dga.or.th"})) == {voiding, c, d}
        assert await ids(verb=liked) == {c, d}
        assert await ids(verb=noted) == {d}
        assert await ids(verb=watched, agent=json.dumps({"mbox": f"mailto:bob-{run}@dga.or.th"})) == set()
        assert await ids(verb=liked, agent=json.dumps({"mbox": f"mailto:bob-{run}@dga.or.th"})) == {c, d}
        voided = await client.get("/xapi/statements", params={"voidedStatementId": a}, headers=dga)
        assert voided.status_code == 200 and voided.json()["id"] == a

        # Referrers first, target last: e targets f, g targets e; f's arrival backfills both.
        await post(st(e, f"dan-{run}", liked, ref(f)))
        await post(st(g, f"eve-{run}", noted, ref(e)))
        assert await ids(verb=v_late) == set()
        await post(st(f, f"fay-{run}", v_late, {"id": f"https://lms.dga.or.th/{run}/late"}))

        async def backfilled():
            found = await ids(verb=v_late)
            return found if found == {f, e, g} else None

        await poll(backfilled, 30, what="referrers backfilled by their late target")
        assert await ids(activity=f"https://lms.dga.or.th/{run}/late") == {f, e, g}

        # Another agency's statement targeting dga's lends no keys (a filter must not reveal what it holds),
        # and dga's statements are not rd's to read.
        await post(st(other, f"rd-{run}", liked, ref(c)), headers=rd)
        assert await ids(rd, verb=watched) == set()
        assert await ids(rd, verb=liked) == {other}
        assert other not in await ids(verb=liked)

        # Keys lost (a crash between storing and linking): the client's retry of the same statement links again.
        await db_of(settings).training_xapi_statements.update_one({"_id": c}, {"$unset": {"ref_keys": ""}})
        assert c not in await ids(verb=watched)
        await post(st(c, f"bob-{run}", liked, ref(a)))
        assert await ids(verb=watched) == {voiding, c, d}
