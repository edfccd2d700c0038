"""`read_body` (services/common/http_ingest.py): every service's one way to read a request body, bounded in size
and in time, and quiet about clients that go away."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from starlette.requests import Request

from services.common.http_ingest import read_body


def _request(messages: list[dict], *, length: int | None = None) -> Request:
    """A request whose client sends `messages` and then nothing more (it neither finishes nor goes away)."""
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    pending = iter(messages)

    async def receive() -> dict:
        try:
            return next(pending)
        except StopIteration:
            await asyncio.Event().wait()  # a slow client: no more bytes, no disconnect
            raise AssertionError("unreachable") from None

    scope = {"type": "http", "method": "POST", "path": "/v1/events", "headers": headers, "query_string": b""}
    return Request(scope, receive)


def _chunk(data: bytes, more: bool = True) -> dict:
    return {"type": "http.request", "body": data, "more_body": more}


def _problem(answer) -> tuple[int, str]:
    return answer.status_code, json.loads(answer.body)["reason"]


def test_a_body_in_chunks_is_read_whole():
    body = asyncio.run(read_body(_request([_chunk(b'{"a":'), _chunk(b"1}", more=False)]), 100, timeout=30))
    assert body == b'{"a":1}'


def test_a_body_past_its_limit_is_cut_while_it_streams():
    answer = asyncio.run(read_body(_request([_chunk(b"x" * 60), _chunk(b"x" * 60)]), 100, timeout=30))
    assert _problem(answer) == (413, "request_too_large")


def test_a_client_that_sends_less_than_it_declared_is_answered_408_within_the_timeout():
    request = _request([_chunk(b'{"a":')], length=400)
    # every route passes its service's `http_body_timeout_seconds`; the bound is read_body's, not wait_for's
    answer = asyncio.run(asyncio.wait_for(read_body(request, 1000, timeout=0.2), 10))
    assert _problem(answer) == (408, "request_timeout")
    assert answer.headers["connection"] == "close"


def test_a_client_that_goes_away_mid_body_is_an_answer_not_an_error(caplog):
    request = _request([_chunk(b'{"a":'), {"type": "http.disconnect"}], length=400)
    with caplog.at_level(logging.INFO, logger="services.common.http_ingest"):
        answer = asyncio.run(read_body(request, 1000, timeout=30))
    assert _problem(answer) == (400, "client_disconnected")
    [record] = [r for r in caplog.records if r.name == "services.common.http_ingest"]
    assert record.levelno == logging.INFO and record.exc_info is None


@pytest.mark.parametrize("coding", ["gzip", "br", "GZIP"])
def test_a_compressed_body_is_refused_unread(coding):
    request = _request([])
    request.scope["headers"].append((b"content-encoding", coding.encode()))
    assert _problem(asyncio.run(read_body(request, 100, timeout=30))) == (415, "unsupported_content_encoding")
