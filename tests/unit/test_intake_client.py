"""The one intake client (services/common/intake_client.py) against a scripted `POST /v1/events`."""

from __future__ import annotations

import json

import httpx

from services.common.intake_client import MAX_BATCH, HttpIntake


def _events(n: int) -> list[dict]:
    return [{"specversion": "1.0", "id": f"e{i}", "source": "/agencies/dga/x", "type": "t", "agency": "dga", "data": {}}
            for i in range(n)]


def _intake(handler, **options) -> HttpIntake:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpIntake("http://svc/", "key-1", client=client, **options)


async def test_batches_at_the_servers_cap_and_reads_per_event_rejections():
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/events" and request.headers["x-api-key"] == "key-1"
        assert request.headers["content-type"] == "application/cloudevents-batch+json"
        batch = json.loads(request.content)
        sizes.append(len(batch))
        return httpx.Response(202, json={"accepted": [{"index": i} for i in range(1, len(batch))],
                                         "rejected": [{"index": 0, "reason": "invalid_data", "detail": "x: is required"}]})

    outcomes = await _intake(handler).send(_events(MAX_BATCH + 7))
    assert sizes == [MAX_BATCH, 7]
    assert [o.status for o in outcomes].count("rejected") == 2
    assert outcomes[0].reason == "invalid_data" and outcomes[0].detail == "x: is required"
    assert outcomes[MAX_BATCH].reason == "invalid_data" and all(o.accepted for o in outcomes[1:MAX_BATCH])


async def test_503_resends_only_what_kafka_did_not_take_and_429_waits_retry_after():
    posted: list[list[str]] = []
    retries: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        posted.append([e["id"] for e in batch])
        if len(posted) == 1:
            return httpx.Response(503, headers={"Retry-After": "0.01"}, json={
                "reason": "broker_unavailable", "accepted": [{"index": 0, "id": "e0", "source": "/agencies/dga/x"}],
                "not_accepted": [{"index": i, "id": e["id"], "source": e["source"]} for i, e in enumerate(batch) if i]})
        if len(posted) == 2:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"reason": "rate_limited"})
        return httpx.Response(202, json={"accepted": [{"index": i} for i in range(len(batch))], "rejected": []})

    outcomes = await _intake(handler, on_retry=lambda: retries.append(1)).send(_events(3))
    assert posted == [["e0", "e1", "e2"], ["e1", "e2"], ["e1", "e2"]]
    assert all(o.accepted for o in outcomes) and len(retries) == 2


async def test_a_refused_batch_is_rejected_with_its_reason_and_an_unreachable_server_fails():
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"reason": "unauthorized", "detail": "unknown key"})

    outcomes = await _intake(refuse).send(_events(2))
    assert [(o.status, o.reason) for o in outcomes] == [("rejected", "unauthorized")] * 2

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    outcomes = await _intake(down, max_attempts=1).send(_events(2))
    assert [(o.status, o.reason) for o in outcomes] == [("failed", "unreachable")] * 2
