"""Bounded cost per request, over the real broker and database: every POST route refuses an over-limit body
with 413 before parsing, answers 401 without reading the body, counts a batch before parsing its items, and
rate-limits per key with 429 + Retry-After."""

from __future__ import annotations

import json
import uuid

import pytest
from support import cloudevent, make_key, running

from services.feedback.main import create_app as feedback_app
from services.feedback.settings import FeedbackSettings
from services.roadmap.main import create_app as roadmap_app
from services.roadmap.settings import RoadmapSettings
from services.training import xapi
from services.training.main import create_app as training_app
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration

BATCH = {"content-type": "application/cloudevents-batch+json"}
ONE = {"content-type": "application/cloudevents+json"}
XAPI = {xapi.VERSION_HEADER: "1.0.3"}
ZEROS = b"[" + b"0," * 2_400_000 + b"0]"  # the 4.8 MB body: 2.4 M items
LIMIT = 200_000  # a body limit small enough that exceeding it is cheap in a test


class Chunks:
    """A streamed (chunked, no Content-Length) request body that counts how much the server pulled."""

    def __init__(self, chunk: bytes, count: int):
        self.chunk, self.count, self.pulled = chunk, count, 0

    async def __aiter__(self):
        for _ in range(self.count):
            self.pulled += 1
            yield self.chunk


def target(agency: str, headcount: int = 10) -> dict:
    return cloudevent("training.target.set", {"agency": agency, "competency": "digital_technology",
                                              "fiscal_year": 2569, "headcount": headcount}, agency=agency)


def statement(agency: str = "dga") -> dict:
    return {"id": str(uuid.uuid4()), "actor": {"account": {"homePage": "https://lms.example", "name": "emp-1"}},
            "verb": {"id": xapi.VERB_COMPLETED}, "object": {"id": "https://lms.example/c/1"},
            "result": {"duration": "PT1H"},
            "context": {"extensions": {xapi.EXT_AGENCY: agency, xapi.EXT_COMPETENCY: "digital_technology"}}}


def reason(resp) -> str:
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    return resp.json()["reason"]


async def assert_body_limits(client, key: str, method: str, path: str, headers: dict, reason_: str = "request_too_large",
                             limit: int = LIMIT, **params) -> None:
    """413 with a declared Content-Length (nothing read) and with a chunked body (cut at the limit)."""
    big = b"[" + b" " * limit + b"]"
    resp = await client.request(method, path, content=big, headers={**headers, "x-api-key": key}, params=params)
    assert resp.status_code == 413 and reason(resp) == reason_, (path, resp.text)
    stream = Chunks(b" " * 16_384, 1_000)  # 16 MB if read to the end
    resp = await client.request(method, path, content=stream, headers={**headers, "x-api-key": key}, params=params)
    assert resp.status_code == 413 and reason(resp) == reason_, (path, resp.text)
    assert stream.pulled <= limit // 16_384 + 2, stream.pulled


async def assert_unauthenticated_body_is_not_read(client, method: str, path: str, headers: dict, **params) -> None:
    stream = Chunks(b"[" * 65_536, 2_000)  # 128 MB of nesting, never read
    resp = await client.request(method, path, content=stream, headers=headers, params=params)
    assert resp.status_code == 401 and reason(resp) == "missing_api_key", (path, resp.text)
    assert stream.pulled == 0, (path, stream.pulled)
    resp = await client.request(method, path, content=ZEROS, headers={**headers, "x-api-key": "nnk_dga_forged"},
                                params=params)
    assert resp.status_code == 401 and reason(resp) == "invalid_api_key", (path, resp.text)


async def test_roadmap_events_limits_and_hostile_batches(settings_for):
    settings = settings_for(RoadmapSettings, ingest_max_body_bytes=LIMIT, watcher_enabled=False)
    key = await make_key(settings, "dga")
    async with running(roadmap_app(settings)) as client:
        await assert_unauthenticated_body_is_not_read(client, "POST", "/v1/events", BATCH)
        await assert_body_limits(client, key, "POST", "/v1/events", BATCH)
        # A single event is limited to 64 KiB whatever the batch limit, before it is read.
        await assert_body_limits(client, key, "POST", "/v1/events", ONE, "event_too_large", limit=64 * 1024)
        # An unsupported media type is refused from the headers: the body is never read.
        stream = Chunks(b"x" * 16_384, 1_000)
        resp = await client.post("/v1/events", content=stream, headers={"content-type": "text/plain", "x-api-key": key})
        assert resp.status_code == 415 and stream.pulled == 0

        hostile = {
            b"{}": (400, "invalid_batch"), b'"x"': (400, "invalid_batch"),
            b"[" * 50_000: (400, "too_complex"), b"[" + b"{}," * 40_000 + b"{}]": (400, "too_complex"),
            b"[" + b"{\"a\":" * 100 + b"1" + b"}" * 100 + b"]": (400, "json_too_deep"),  # refused alone, the only one
            b"[0,": (400, "invalid_json"), b"\xff\xfe[": (400, "invalid_json"),
            b"[" + b"{}," * 500 + b"{}]": (413, "too_many_events"),
        }
        for body, (status, why) in hostile.items():
            resp = await client.post("/v1/events", content=body, headers={**BATCH, "x-api-key": key})
            assert resp.status_code == status and reason(resp) == why, (body[:20], resp.text)
            detail = resp.json()["detail"]
            assert "Error" not in detail and "Traceback" not in detail, detail
        # An empty batch is a batch ("The batch MAY be empty", HTTP binding 3.3.3): nothing accepted, nothing refused.
        resp = await client.post("/v1/events", content=b" [ ] ", headers={**BATCH, "x-api-key": key})
        assert (resp.status_code, resp.json()) == (202, {"accepted": [], "rejected": [], "duplicates": []}), resp.text
        # Non-object items and malformed attribute values: per-event 400 answers, never a 500.
        bad = [0, None, "x", [], {"specversion": "1.0", "id": "a", "source": "/agencies/dga/x", "type": 5},
               {**target("dga"), "time": 5}, {**target("dga"), "time": "9999-12-31T23:00:00-12:00"},
               {**target("dga"), "partitionkey": [1]}]
        resp = await client.post("/v1/events", content=json.dumps(bad), headers={**BATCH, "x-api-key": key})
        assert resp.status_code == 400, resp.text
        assert len(resp.json()["errors"]) == len(bad)
        # A batch of exactly the limit is parsed (and its events answered one by one).
        resp = await client.post("/v1/events", content=json.dumps([target("dga", i) for i in range(500)]),
                                 headers={**BATCH, "x-api-key": key})
        assert resp.status_code == 400 and len(resp.json()["errors"]) == 500  # targets are not roadmap events
        assert {e["reason"] for e in resp.json()["errors"]} == {"type_not_accepted"}


async def test_feedback_zeros_batch_and_post_limits(settings_for):
    settings = settings_for(FeedbackSettings)  # default body limit: the zeros body (4.8 MB) is over it
    key = await make_key(settings, "dga")
    async with running(feedback_app(settings)) as client:
        await assert_unauthenticated_body_is_not_read(client, "POST", "/v1/events", BATCH)
        await assert_unauthenticated_body_is_not_read(client, "POST", "/v1/responses", {"content-type": "application/json"})
        resp = await client.post("/v1/events", content=ZEROS, headers={**BATCH, "x-api-key": key})
        assert resp.status_code == 413 and reason(resp) == "request_too_large"
        await assert_body_limits(client, key, "POST", "/v1/events", BATCH, limit=settings.ingest_max_body_bytes)
        await assert_body_limits(client, key, "POST", "/v1/responses", {"content-type": "application/json"},
                                 limit=64 * 1024)
        resp = await client.post("/v1/responses", content=b"[" * 50_000, headers={"x-api-key": key})
        assert resp.status_code == 400 and reason(resp) == "json_too_deep"

    # The case with a body limit that lets the 4.8 MB through: the 500-event cap answers first.
    settings = settings_for(FeedbackSettings, ingest_max_body_bytes=8 * 1024 * 1024)
    key = await make_key(settings, "dga")
    async with running(feedback_app(settings)) as client:
        resp = await client.post("/v1/events", content=ZEROS, headers={**BATCH, "x-api-key": key})
        assert resp.status_code == 413 and reason(resp) == "too_many_events", resp.text
        assert "500" in resp.json()["detail"]


async def test_training_events_and_xapi_limits(settings_for):
    settings = settings_for(TrainingSettings, ingest_max_body_bytes=LIMIT)
    key = await make_key(settings, "dga")
    async with running(training_app(settings)) as client:
        for method, params in (("POST", {}), ("PUT", {"statementId": str(uuid.uuid4())})):
            await assert_unauthenticated_body_is_not_read(client, method, "/xapi/statements", XAPI, **params)
            await assert_body_limits(client, key, method, "/xapi/statements", XAPI, **params)
            resp = await client.request(method, "/xapi/statements", content=b"[" * 50_000, params=params,
                                        headers={**XAPI, "x-api-key": key})
            assert resp.status_code == 400 and reason(resp) == "too_complex"
            resp = await client.request(method, "/xapi/statements", content=b'{"a":' * 100 + b"1" + b"}" * 100,
                                        params=params, headers={**XAPI, "x-api-key": key})
            assert resp.status_code == 400 and reason(resp) == "json_too_deep"
            assert resp.headers[xapi.VERSION_HEADER] == "1.0.3"
        await assert_unauthenticated_body_is_not_read(client, "POST", "/v1/events", BATCH)
        await assert_body_limits(client, key, "POST", "/v1/events", BATCH)
        resp = await client.post("/xapi/statements", content=b"[" + b"0," * 20_000 + b"0]",
                                 headers={**XAPI, "x-api-key": key})
        assert resp.status_code == 413 and reason(resp) == "too_many_statements"
        resp = await client.post("/xapi/statements", json=statement(), headers={**XAPI, "x-api-key": key})
        assert resp.status_code == 200, resp.text
        # Values of unexpected types or ranges in a statement are that request's 400, never a 500.
        ext = {xapi.EXT_COMPETENCY: "mindset"}
        for hostile in ({"context": [1]}, {"result": "x"}, {"context": {"extensions": {xapi.EXT_COMPETENCY: [1]}}},
                        {"context": {"extensions": ext}, "timestamp": "9999-12-31T23:00:00-12:00"},
                        {"context": {"extensions": [1]}}):
            resp = await client.post("/xapi/statements", json={**statement(), **hostile}, headers={**XAPI, "x-api-key": key})
            # issue 17.7: a wrong JSON type is `invalid_type` with its path; a year past the calendar, a date's refusal
            assert resp.status_code == 400 and reason(resp) in ("malformed_statement", "invalid_type",
                                                                "date_out_of_range"), (hostile, resp.text)


async def test_rate_limits_per_key_in_events_with_retry_after(settings_for):
    # A budget of 5 events per key, refilled at one event per 100 s: a sixth event within the test is refused.
    settings = settings_for(TrainingSettings, ingest_rate_per_second=0.01, ingest_rate_burst=5)
    dga, rd = await make_key(settings, "dga"), await make_key(settings, "rd")
    async with running(training_app(settings)) as client:
        resp = await client.post("/v1/events", content=json.dumps([target("dga", i) for i in range(4)]),
                                 headers={**BATCH, "x-api-key": dga})
        assert resp.status_code == 202, resp.text
        # Counted in events: a batch of 2 with one token left is refused whole, and says how long to wait.
        resp = await client.post("/v1/events", content=json.dumps([target("dga"), target("dga")]),
                                 headers={**BATCH, "x-api-key": dga})
        assert resp.status_code == 429 and reason(resp) == "rate_limited"
        assert resp.headers["Retry-After"].isdigit() and 1 <= int(resp.headers["Retry-After"]) <= 200
        # The service's budget is one per key for /v1/events and /xapi/statements alike.
        resp = await client.post("/xapi/statements", json=statement(), headers={**XAPI, "x-api-key": dga})
        assert resp.status_code == 429 and reason(resp) == "rate_limited"
        assert int(resp.headers["Retry-After"]) >= 1 and resp.headers[xapi.VERSION_HEADER] == "1.0.3"
        # Another key has its own budget.
        resp = await client.post("/xapi/statements", json=[statement("rd") for _ in range(5)],
                                 headers={**XAPI, "x-api-key": rd})
        assert resp.status_code == 200, resp.text
        resp = await client.post("/xapi/statements", json=statement("rd"), headers={**XAPI, "x-api-key": rd})
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
        resp = await client.post("/v1/events", content=json.dumps(target("rd")), headers={**ONE, "x-api-key": rd})
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
