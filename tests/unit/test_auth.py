"""Who may submit and read what (agency, programme office, survey kiosk), and the key cache: revocation
within the TTL, expiry on every request, bounded LRUs, brief caching of unknown keys, last-used stamps."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException
from starlette.datastructures import Headers

from services.common.auth import (
    SURVEY_INTAKE,
    WRITERS,
    ApiKeyAuth,
    Principal,
    Role,
    basic_credentials,
    basic_password,
    bearer_token,
    generate_key,
    hash_key,
    key_id_of,
    parse_duration,
    presented_credential,
)
from services.contracts.envelope import make_event

TARGET = {"agency": "rd", "competency": "mindset", "fiscal_year": 2569, "headcount": 10}
PLAN = {"milestone_id": "RD-1", "title_en": "e-Filing for all", "workstream": "technology_access",
        "owner_agency": "rd", "due_date": "2026-09-30"}


def event(type_, data, agency="rd"):
    return make_event(type_, data, agency=agency, source=f"/agencies/{agency}/sys", id="x-1",
                      time=datetime.now(UTC))


def test_agency_key_submits_only_its_own_agency():
    rd = Principal("rd", Role.agency, "k")
    dga = Principal("dga", Role.agency, "k")
    assert rd.may_submit(event("training.target.set", TARGET)) is None
    refusal = dga.may_submit(event("training.target.set", TARGET))
    assert refusal is not None and refusal.reason == "agency_not_allowed" and "'dga'" in refusal.detail


def test_programme_office_plans_for_any_agency_but_reports_nothing_else_for_them():
    office = Principal("opdc", Role.programme_office, "k")
    assert office.may_submit(event("roadmap.milestone.planned", PLAN)) is None
    assert office.may_submit(event("training.target.set", TARGET)).reason == "agency_not_allowed"


def test_keys_are_random_and_stored_as_hashes():
    a, b = generate_key("rd"), generate_key("rd")
    assert a != b and a.startswith("nnk_rd_") and len(a) > 40
    assert hash_key(a) != a and len(hash_key(a)) == 64 and hash_key(a) == hash_key(a)


# --- roles --------------------------------------------------------------------------------------
RESPONSE = {"agency": "rd", "channel": "walk_in", "age_group": "age_25_34", "satisfaction": 4}


def test_survey_key_submits_only_responses_of_its_agency():
    kiosk = Principal("rd", Role.survey, "k")
    assert kiosk.may_submit(event("training.target.set", TARGET)).reason == "role_not_allowed"
    assert kiosk.may_submit(event("roadmap.milestone.planned", PLAN)).reason == "role_not_allowed"


def test_read_scope_per_role():
    rd = Principal("rd", Role.agency, "k")
    assert rd.read_scope(None) == "rd" and rd.read_scope("rd") == "rd"
    with pytest.raises(HTTPException) as other:
        rd.read_scope("dga")
    assert other.value.status_code == 403 and other.value.detail["reason"] == "agency_not_allowed"
    with pytest.raises(HTTPException) as kiosk:
        Principal("rd", Role.survey, "k").read_scope("rd")
    assert kiosk.value.status_code == 403 and kiosk.value.detail["reason"] == "role_not_allowed"
    office = Principal("opdc", Role.programme_office, "k")
    assert office.read_scope(None) is None and office.read_scope("dga") == "dga"
    assert rd.may_see("rd") and not rd.may_see("dga") and office.may_see("dga")
    assert not Principal("rd", Role.survey, "k").may_see("rd")


@pytest.mark.parametrize(("text", "seconds"), [("90d", 90 * 86400), ("12h", 43200), ("30m", 1800), ("2w", 14 * 86400),
                                               ("1d12h", 129600)])
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "90", "d", "-1d", "0d", "90x", "1d 2y", "9" * 20 + "d"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


# --- the key cache ------------------------------------------------------------------------------
class FakeKeys:
    """The api_keys collection: find_one by _id, update_one; counts lookups."""

    def __init__(self):
        self.docs: dict[str, dict] = {}
        self.lookups = 0
        self.down = False

    async def find_one(self, query):
        self.lookups += 1
        if self.down:
            from pymongo.errors import ServerSelectionTimeoutError
            raise ServerSelectionTimeoutError("down")
        doc = self.docs.get(query["_id"])
        return dict(doc) if doc else None

    async def update_one(self, query, update):
        doc = self.docs.get(query["_id"])
        if doc:
            doc.update(update["$set"])


class FakeDb:
    def __init__(self):
        self.api_keys = FakeKeys()


class Clocks:
    def __init__(self):
        self.mono = 1000.0
        self.wall = datetime(2026, 6, 1, tzinfo=UTC)

    def advance(self, seconds):
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def setup_auth(**kw):
    db, clocks = FakeDb(), Clocks()
    auth = ApiKeyAuth(lambda: db, kw.pop("ttl", 5.0), monotonic=lambda: clocks.mono, now=lambda: clocks.wall, **kw)
    return auth, db, clocks


def add_key(db, agency="rd", role="agency", **fields):
    key = generate_key(agency)
    db.api_keys.docs[hash_key(key)] = {"_id": hash_key(key), "agency": agency, "role": role, "revoked": False,
                                       "expires_at": None, "last_used_at": None, **fields}
    return key


class FakeRequest:
    def __init__(self, headers):
        items = headers if isinstance(headers, list) else list(headers.items())
        self.headers = Headers(raw=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items])


def run(coro):
    return asyncio.run(coro)


def test_roles_admitted_per_route():
    auth, db, _ = setup_auth()
    kiosk, rd = add_key(db, role="survey"), add_key(db)

    async def go():
        with pytest.raises(HTTPException) as refused:
            await auth(FakeRequest({"X-API-Key": kiosk}))
        assert refused.value.status_code == 403 and refused.value.detail["reason"] == "role_not_allowed"
        assert (await auth.survey_intake(FakeRequest({"X-API-Key": kiosk}))).role is Role.survey
        principal = await auth(FakeRequest({"Authorization": f"Bearer {rd}"}))
        assert principal.agency == "rd" and principal.key_id == key_id_of(hash_key(rd))
        assert Role.survey in SURVEY_INTAKE
        for headers, reason in (({}, "missing_api_key"), ({"X-API-Key": "nope"}, "invalid_api_key")):
            with pytest.raises(HTTPException) as missing:
                await auth(FakeRequest(headers))
            assert missing.value.status_code == 401 and missing.value.detail["reason"] == reason
    run(go())


def test_a_credential_sent_twice_or_two_different_keys_are_refused_as_ambiguous():
    auth, db, _ = setup_auth()
    rd, dga = add_key(db), add_key(db, agency="dga")
    basic = "Basic " + base64.b64encode(f"lrs:{dga}".encode()).decode()

    async def go():
        for headers in ([("X-API-Key", rd), ("X-API-Key", dga)], [("X-API-Key", rd), ("X-API-Key", rd)],
                        [("Authorization", f"Bearer {rd}"), ("Authorization", f"Bearer {dga}")],
                        [("X-API-Key", rd), ("Authorization", f"Bearer {dga}")],
                        [("X-API-Key", rd), ("Authorization", "Bearer nope")]):
            with pytest.raises(HTTPException) as refused:
                await auth(FakeRequest(headers))
            assert refused.value.status_code == 400 and refused.value.detail["reason"] == "ambiguous_credentials"
        with pytest.raises(HTTPException) as refused:  # a route taking HTTP Basic: the password is a key too
            await auth.authenticate(FakeRequest([("X-API-Key", rd), ("Authorization", basic)]), WRITERS,
                                    basic_realm="xAPI")
        assert refused.value.detail["reason"] == "ambiguous_credentials"
        # The same key both ways is one credential; Basic counts only where a route takes it.
        assert (await auth(FakeRequest([("X-API-Key", rd), ("Authorization", f"Bearer {rd}")]))).agency == "rd"
        assert (await auth(FakeRequest([("X-API-Key", rd), ("Authorization", basic)]))).agency == "rd"
        assert (await auth.authenticate(FakeRequest([("Authorization", basic)]), WRITERS, basic_realm="xAPI")).agency == "dga"
        with pytest.raises(HTTPException) as wrong:
            await auth.authenticate(FakeRequest([("Authorization", "Basic " + base64.b64encode(b"lrs:x").decode())]),
                                    WRITERS, basic_realm="xAPI")
        assert wrong.value.status_code == 401 and wrong.value.detail["reason"] == "invalid_api_key"
        assert "Basic" in wrong.value.headers["WWW-Authenticate"]
    run(go())


def test_revocation_is_seen_after_the_cache_ttl():
    auth, db, clocks = setup_auth(ttl=5.0)
    key = add_key(db)

    async def go():
        assert await auth.lookup(key) is not None
        db.api_keys.docs[hash_key(key)]["revoked"] = True
        clocks.advance(4.9)
        assert await auth.lookup(key) is not None  # still cached
        clocks.advance(0.2)
        assert await auth.lookup(key) is None
    run(go())


def test_expiry_is_checked_on_every_request_even_when_cached():
    auth, db, clocks = setup_auth(ttl=10.0)
    key = add_key(db, expires_at=clocks.wall + timedelta(seconds=3))

    async def go():
        assert await auth.lookup(key) is not None
        lookups = db.api_keys.lookups
        clocks.advance(3.0)
        assert await auth.lookup(key) is None
        assert db.api_keys.lookups == lookups  # answered from the cache, expiry checked anyway
    run(go())


def test_naive_expiry_from_the_database_counts_as_utc():
    auth, db, clocks = setup_auth()
    key = add_key(db, expires_at=(clocks.wall - timedelta(seconds=1)).replace(tzinfo=None))
    assert run(auth.lookup(key)) is None


def test_unknown_keys_are_cached_briefly_and_malformed_ones_not_looked_up():
    auth, db, clocks = setup_auth(unknown_seconds=2.0)
    key = generate_key("rd")  # well-formed, never issued

    async def go():
        assert await auth.lookup(key) is None
        assert await auth.lookup(key) is None
        assert db.api_keys.lookups == 1
        clocks.advance(2.1)
        db.api_keys.docs[hash_key(key)] = {"_id": hash_key(key), "agency": "rd", "role": "agency", "revoked": False}
        assert await auth.lookup(key) is not None  # created meanwhile: found once the short entry lapsed
        before = db.api_keys.lookups
        for junk in ("x" * 5000, "nnk_rd_short", "' or 1=1 --"):
            assert await auth.lookup(junk) is None
        assert db.api_keys.lookups == before
    run(go())


def test_caches_are_bounded_and_a_flood_of_unknown_keys_keeps_real_keys_cached():
    auth, db, _ = setup_auth(max_entries=50)
    real = add_key(db)

    async def go():
        assert await auth.lookup(real) is not None
        for _ in range(500):
            assert await auth.lookup(generate_key("rd")) is None
        known, unknown = auth.cache_sizes()
        assert known == 1 and unknown == 50
        lookups = db.api_keys.lookups
        assert await auth.lookup(real) is not None
        assert db.api_keys.lookups == lookups  # not evicted by the flood
        for _ in range(120):
            assert await auth.lookup(add_key(db)) is not None
        assert auth.cache_sizes()[0] == 50
    run(go())


def test_last_used_is_recorded_at_most_once_a_minute_in_the_background():
    auth, db, clocks = setup_auth(ttl=0.0)
    key = add_key(db)
    doc = db.api_keys.docs[hash_key(key)]

    async def go():
        await auth.lookup(key)
        await auth.settled()
        first = doc["last_used_at"]
        assert first == clocks.wall
        clocks.advance(30)
        await auth.lookup(key)
        await auth.settled()
        assert doc["last_used_at"] == first
        clocks.advance(31)
        await auth.lookup(key)
        await auth.settled()
        assert doc["last_used_at"] == clocks.wall
    run(go())


def test_a_known_key_survives_a_short_database_outage_but_an_unknown_one_gets_503():
    auth, db, clocks = setup_auth(ttl=1.0)
    key = add_key(db)

    async def go():
        assert await auth.lookup(key) is not None
        db.api_keys.down = True
        clocks.advance(2)
        assert await auth.lookup(key) is not None
        with pytest.raises(HTTPException) as unavailable:
            await auth.lookup(generate_key("rd"))
        assert unavailable.value.status_code == 503
    run(go())


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(("header", "pair", "password"), [
    (_basic(b"alertmanager:s3cret"), ("alertmanager", "s3cret"), "s3cret"),
    (_basic(b"u:pa:ss"), ("u", "pa:ss"), "pa:ss"),  # the password may hold colons (RFC 7617)
    ("  basic " + base64.b64encode(b"u:p").decode() + " ", ("u", "p"), "p"),  # scheme names are case-insensitive
    (_basic("ผู้ใช้:รหัส".encode()), ("ผู้ใช้", "รหัส"), "รหัส"),  # UTF-8
    (_basic(b"no colon"), None, ""),
    (_basic(b"\xff:\xfe"), None, ""),  # not UTF-8
    ("Basic not*base64", None, ""),
    ("Bearer abc", None, None),
    ("", None, None),
])
def test_one_reading_of_basic_credentials(header, pair, password):
    """The xAPI intake (a Basic password is a key) and the Alertmanager receiver (user and password) read Basic
    credentials one way: a malformed Basic header presents a credential that matches nothing, never none."""
    assert basic_credentials(header) == pair
    assert basic_password(header) == password


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"),
    ("bearer  abc ", "abc"),  # scheme names are case-insensitive; the token is trimmed
    ("Bearer", None),  # no token: no bearer credential (the request presents none, 401)
    (_basic(b"u:p"), None),
    ("", None),
])
def test_one_reading_of_bearer_tokens(header, token):
    """The API keys' reading (`presented_credential`) and the Alertmanager receiver's read Bearer tokens one way."""
    assert bearer_token(header) == token
    found = presented_credential(Headers({"authorization": header}))
    assert (found.key if found else None) == token
