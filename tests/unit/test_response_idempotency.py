"""`POST /v1/responses` with an Idempotency-Key, over fakes: a retry is the same event, another body is 409."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.responses import JSONResponse
from pymongo.errors import AutoReconnect, DuplicateKeyError

from services.common import idempotency
from services.common.auth import Principal, Role
from services.common.idempotency import IdempotencyStore
from services.contracts.envelope import Event
from services.feedback.handlers import FeedbackService
from services.feedback.settings import FeedbackSettings

KEY = "3f2b8c1e-9d4a-4b7e-a1c2-0e9f8d7c6b5a"
FORM = {"service_name": "ต่ออายุใบอนุญาต", "channel": "walk_in", "age_group": "60_plus", "satisfaction": 4,
        "tech_difficulty": "none", "aware_of_digital_channels": True, "submitted_at": "2026-03-15T09:30:00+07:00"}
KIOSK = Principal("dga", Role.survey, "k1")


class FakeCollection:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _key(_id: Any) -> str:
        return json.dumps(_id, sort_keys=True)

    async def insert_one(self, doc: dict[str, Any]) -> None:
        if self._key(doc["_id"]) in self.docs:
            raise DuplicateKeyError("E11000")
        stored = dict(doc)
        for name in ("time", "claimed_at"):  # MongoDB keeps milliseconds
            stored[name] = doc[name].replace(microsecond=doc[name].microsecond // 1000 * 1000)
        self.docs[self._key(doc["_id"])] = stored

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        return self.docs.get(self._key(query["_id"]))

    async def delete_one(self, query: dict[str, Any]) -> None:
        self.docs.pop(self._key(query["_id"]), None)


class FakeIntake:
    """Publishes what it is given; answers `status` (202 unless told)."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.status = 202

    async def ingest(self, events: list[Event], principal: Principal) -> JSONResponse:
        if self.status != 202:
            return JSONResponse({"reason": "refused"}, status_code=self.status)
        self.published.extend(events)
        return JSONResponse({"accepted": []}, status_code=202)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 15, 3, 0, 0, 654321, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=7)  # every request is later: a retry must not change the event
        return self.now


@pytest.fixture
def service() -> FeedbackService:
    svc = FeedbackService(None, FeedbackSettings(), Clock(), idempotency=IdempotencyStore(FakeCollection()))  # type: ignore[arg-type]
    svc.intake = FakeIntake()  # type: ignore[assignment]
    return svc


def body(answer: JSONResponse) -> dict[str, Any]:
    return json.loads(answer.body)


async def test_a_retry_with_the_same_key_is_the_same_event(service: FeedbackService) -> None:
    first = await service.submit_response(dict(FORM), KIOSK, KEY)
    # The retry's JSON lists the fields in another order: still the same body.
    again = await service.submit_response(dict(reversed(list(FORM.items()))), KIOSK, KEY)
    assert first.status_code == again.status_code == 202
    assert body(first) == body(again) and body(first)["id"] == idempotency.event_id(KEY)
    a, b = service.intake.published  # type: ignore[union-attr]
    assert a.key == b.key and a.content_hash() == b.content_hash()  # the consumer stores it once


async def test_the_same_key_with_another_body_is_409(service: FeedbackService) -> None:
    assert (await service.submit_response(dict(FORM), KIOSK, KEY)).status_code == 202
    answer = await service.submit_response(dict(FORM, satisfaction=1), KIOSK, KEY)
    assert answer.status_code == 409 and body(answer)["reason"] == "idempotency_key_reused"
    assert len(service.intake.published) == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("key", ["short", "x" * 129, "has space in it", "ไทยไทยไทยไทย", "a/b/c/d/e/f", ""])
async def test_a_malformed_key_is_400(service: FeedbackService, key: str) -> None:
    answer = await service.submit_response(dict(FORM), KIOSK, key)
    assert answer.status_code == 400 and body(answer)["reason"] == "invalid_idempotency_key"


async def test_keys_are_scoped_to_the_agency(service: FeedbackService) -> None:
    other = Principal("rd", Role.survey, "k2")
    a = await service.submit_response(dict(FORM), KIOSK, KEY)
    b = await service.submit_response(dict(FORM, satisfaction=1), other, KEY)
    assert a.status_code == b.status_code == 202 and body(a)["source"] != body(b)["source"]


async def test_a_refused_first_request_leaves_the_key_free(service: FeedbackService) -> None:
    service.intake.status = 400  # type: ignore[union-attr]
    assert (await service.submit_response(dict(FORM), KIOSK, KEY)).status_code == 400
    service.intake.status = 202  # type: ignore[union-attr]
    assert (await service.submit_response(dict(FORM, satisfaction=5), KIOSK, KEY)).status_code == 202


async def test_after_a_503_the_retry_publishes_the_same_event(service: FeedbackService) -> None:
    service.intake.status = 503  # type: ignore[union-attr]
    assert (await service.submit_response(dict(FORM), KIOSK, KEY)).status_code == 503
    service.intake.status = 202  # type: ignore[union-attr]
    again = await service.submit_response(dict(FORM), KIOSK, KEY)
    assert again.status_code == 202 and body(again)["id"] == idempotency.event_id(KEY)


async def test_a_database_outage_is_503_and_the_retry_succeeds(service: FeedbackService) -> None:
    store = service.idempotency.collection
    real = store.insert_one
    store.insert_one = _raise_once(real)  # type: ignore[method-assign]
    answer = await service.submit_response(dict(FORM), KIOSK, KEY)
    assert answer.status_code == 503 and body(answer)["reason"] == "database_unavailable"
    assert answer.headers["retry-after"] == "5" and service.intake.published == []  # type: ignore[union-attr]
    again = await service.submit_response(dict(FORM), KIOSK, KEY)
    assert again.status_code == 202 and body(again)["id"] == idempotency.event_id(KEY)


def _raise_once(real: Any) -> Any:
    calls = []

    async def insert_one(doc: dict[str, Any]) -> None:
        calls.append(doc)
        if len(calls) == 1:
            raise AutoReconnect("connection refused")
        await real(doc)
    return insert_one


async def test_without_a_key_each_request_is_a_new_response(service: FeedbackService) -> None:
    a = await service.submit_response(dict(FORM), KIOSK)
    b = await service.submit_response(dict(FORM), KIOSK)
    assert body(a)["id"] != body(b)["id"]


def test_derived_ids_cannot_equal_a_server_made_id() -> None:
    uuid_like = "0e9f8d7c-6b5a-4b7e-a1c2-3f2b8c1e9d4a"
    assert idempotency.event_id(uuid_like) != uuid_like and idempotency.event_id(uuid_like).startswith("idem-")
    assert idempotency.fingerprint({"a": 1, "b": 2}) == idempotency.fingerprint({"b": 2, "a": 1})
