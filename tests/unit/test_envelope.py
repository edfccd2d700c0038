"""CloudEvents envelope: bindings, our extension rules, reasons for every refusal."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contracts.envelope import (
    MAX_EVENT_BYTES,
    EventError,
    make_event,
    parse_http,
    parse_kafka,
    validate_attributes,
)
from services.contracts.jsonschema import SCHEMA_DIR, render_all

PLANNED = {"milestone_id": "M-1", "title_th": "ทดสอบ", "workstream": "regulation_reform", "owner_agency": "dga",
           "due_date": "2026-09-30"}


def structured(**overrides):
    event = {"specversion": "1.0", "id": "e-1", "source": "/agencies/dga/plan", "type": "roadmap.milestone.planned",
             "agency": "dga", "time": "2026-01-05T09:00:00+07:00", "data": PLANNED}
    event.update(overrides)
    return event


def one(results):
    assert len(results) == 1
    return results[0]


def test_structured_http_round_trips_to_kafka_structured_mode():
    event = one(parse_http({"Content-Type": "application/cloudevents+json"}, json.dumps(structured()).encode()))
    assert event.key == ("/agencies/dga/plan", "e-1")
    msg = event.to_kafka()
    assert msg.headers == {"content-type": b"application/cloudevents+json"}
    assert msg.key == "dga"  # no partitionkey: keyed by agency so one agency's events stay ordered
    again = parse_kafka(list(msg.headers.items()), msg.key.encode(), msg.value)
    assert again == event


def test_partitionkey_becomes_the_kafka_key():
    event = one(parse_http({"content-type": "application/cloudevents+json"},
                           json.dumps(structured(partitionkey="M-1")).encode()))
    assert event.to_kafka().key == "M-1"


def test_binary_mode_http_and_kafka():
    headers = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/agencies/dga/x", "ce-agency": "dga",
               "ce-type": "roadmap.milestone.cancelled", "content-type": "application/json"}
    event = one(parse_http(headers, b'{"milestone_id": "M-1", "reason": "merged"}'))
    assert event.data.reason == "merged"
    kafka_headers = [(k.replace("ce-", "ce_"), v.encode()) for k, v in headers.items()]
    assert parse_kafka(kafka_headers, None, b'{"milestone_id": "M-1", "reason": "merged"}').id == "b-1"


def test_batch_mode_gives_one_result_per_event():
    body = json.dumps([structured(), structured(id="e-2", data={**PLANNED, "due_date": "not a date"}), "junk"]).encode()
    results = parse_http({"content-type": "application/cloudevents-batch+json"}, body)
    assert [type(r).__name__ for r in results] == ["Event", "EventError", "EventError"]
    assert results[1].reason == "invalid_data" and "due_date" in results[1].detail
    assert results[2].reason == "invalid_cloudevent"


@pytest.mark.parametrize("change, reason", [
    ({"id": None}, "missing_attribute"),
    ({"specversion": "0.3"}, "unsupported_specversion"),
    ({"type": "roadmap.milestone.exploded"}, "unknown_type"),
    ({"agency": None}, "missing_attribute"),
    ({"agency": "atlantis"}, "unknown_agency"),
    ({"source": "/agencies/rd/plan"}, "source_outside_namespace"),
    ({"type": "roadmap.milestone.missed"}, "source_not_allowed"),
    ({"time": "yesterday"}, "invalid_cloudevent"),
    ({"Bad_Ext": "x"}, "invalid_cloudevent"),
    ({"data": {**PLANNED, "owner_agency": "rd"}}, "agency_mismatch"),
    ({"data": {**PLANNED, "surprise": 1}}, "invalid_data"),
    ({"datacontenttype": "application/xml"}, "unsupported_content_type"),
])
def test_refusals_carry_a_stable_reason(change, reason):
    event = {k: v for k, v in structured(**change).items() if v is not None}
    result = one(parse_http({"content-type": "application/cloudevents+json"}, json.dumps(event).encode()))
    assert isinstance(result, EventError) and result.reason == reason, result


def test_an_event_nested_too_deep_is_refused_alone_in_its_batch():
    """One bad record never costs another: read whole, a too-deep event is answered like any other refused one."""
    deep = b'{"a":' * 40 + b"1" + b"}" * 40
    good = [json.dumps(structured(id=f"e-{i}")).encode() for i in range(2)]
    results = parse_http({"content-type": "application/cloudevents-batch+json"},
                         b"[" + good[0] + b"," + deep + b"," + good[1] + b"]", max_events=10)
    assert [type(r).__name__ for r in results] == ["Event", "EventError", "Event"]
    assert results[1].reason == "json_too_deep" and "deeper than" in results[1].detail


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_time_that_leaves_the_calendar_in_utc_is_out_of_range(time):
    result = one(parse_http({"content-type": "application/cloudevents+json"}, json.dumps(structured(time=time)).encode()))
    assert isinstance(result, EventError) and result.reason == "date_out_of_range", result


def test_another_services_event_is_not_accepted_before_its_data_is_judged():
    """A feedback response sent to the roadmap intake is `type_not_accepted`, not a list of what its data lacks
    for a model this service never takes; the claim stays known (another agency's event is still 403)."""
    event = structured(type="feedback.response.submitted", source="/agencies/dga/survey", data={"channel": "web"})
    for accepted in (None, {"roadmap.milestone.planned"}):
        result = one(parse_http({"content-type": "application/cloudevents+json"}, json.dumps(event).encode(),
                                allowed_types=accepted))
        assert isinstance(result, EventError)
        assert result.reason == ("invalid_data" if accepted is None else "type_not_accepted"), result
    assert result.claim is not None and result.claim.agency == "dga"


BINARY_ATTRS = {"specversion": "1.0", "id": "b-1", "source": "/agencies/dga/plan", "type": "roadmap.milestone.planned",
                "agency": "dga"}


@pytest.mark.parametrize(("body", "says"), [
    (b"{nope", "invalid JSON, expecting property name"),
    (b"\xc3\x28 not utf-8", "invalid UTF-8 at byte 0"),
    (b'{"a": 1, "a": 2}', "same name twice"),
    (b'{"n": NaN}', "NaN is not a JSON number"),
    (b'{"t": "\\ud800"}', "unpaired UTF-16 surrogate"),
    (b"[" * 40 + b"]" * 40, "nests deeper than"),
])
def test_binary_data_that_is_no_json_is_invalid_json_in_both_transports(body, says):
    """The body (record value) of a binary-mode event is its data: data declared JSON that does not read as JSON is
    refused as a structured event's body is, `invalid_json` with what was wrong, over HTTP and Kafka alike."""
    http = one(parse_http({**{f"ce-{k}": v for k, v in BINARY_ATTRS.items()}, "content-type": "application/json"}, body))
    with pytest.raises(EventError) as kafka:
        parse_kafka([(f"ce_{k}", v.encode()) for k, v in BINARY_ATTRS.items()] + [("content-type", b"application/json")],
                    b"dga", body)
    assert isinstance(http, EventError) and http.reason == "invalid_json" and says in http.detail, http
    assert kafka.value.reason == "invalid_json" and says in kafka.value.detail, kafka.value
    assert http.event_id == kafka.value.event_id == "b-1"
    assert http.detail.removeprefix("the body: ") == kafka.value.detail.removeprefix("the record value: ")


def test_data_that_is_a_string_or_base64_without_an_object_says_so():
    for extra, says in (({"data": "plain words"}, "data is a string that does not hold a JSON object"),
                        ({"data_base64": "e3g="}, "data_base64 does not hold a JSON object")):  # "{x"
        event = {k: v for k, v in structured(**extra).items() if not ("data" in extra and k == "data_base64")}
        if "data_base64" in extra:
            event.pop("data")
        err = one(parse_http({"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode()))
        assert isinstance(err, EventError) and err.reason == "invalid_data" and says in err.detail, err


def test_the_sdk_never_invents_an_id_for_binary_mode():
    headers = {"ce-specversion": "1.0", "ce-source": "/agencies/dga/x", "ce-agency": "dga",
               "ce-type": "roadmap.milestone.cancelled", "content-type": "application/json"}
    assert one(parse_http(headers, b'{"milestone_id": "M-1", "reason": "r"}')).reason == "missing_attribute"


def test_oversized_and_unreadable_requests():
    big = structured(data={**PLANNED, "description": "x" * 4000})
    big["padding"] = "y" * MAX_EVENT_BYTES
    assert one(parse_http({"content-type": "application/cloudevents+json"}, json.dumps(big).encode())).reason == "event_too_large"
    with pytest.raises(EventError) as err:
        parse_http({"content-type": "text/plain"}, b"hello")
    assert err.value.reason == "unsupported_media_type"
    with pytest.raises(EventError) as err:
        parse_http({"content-type": "application/cloudevents-batch+json"}, b'{"not": "a list"}')
    assert err.value.reason == "invalid_batch"
    with pytest.raises(EventError) as err:
        parse_kafka([], None, b"\x00\x01")
    assert err.value.reason == "invalid_json"


def test_naive_timestamps_and_national_ids_are_refused_in_data():
    with pytest.raises(EventError) as err:
        make_event("roadmap.milestone.progressed", {"milestone_id": "M-1", "percent_complete": 5, "as_of": "2026-01-01T10:00:00"},
                   agency="dga", source="/agencies/dga/x", id="p-1", time=datetime.now(UTC))
    assert "timezone" in err.value.detail
    completion = {"agency": "dga", "learner_ref": "1101700230708", "course_id": "C1", "competency": "mindset",
                  "hours": 1, "completed_on": "2026-01-01", "passed": True}
    with pytest.raises(EventError) as err:
        make_event("training.course.completed", completion, agency="dga", source="/agencies/dga/lms", id="c-1",
                   time=datetime.now(UTC))
    assert "national ID" in err.value.detail


def test_committed_json_schemas_match_the_models():
    rendered = render_all()
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob("*.json")}
    assert committed == rendered, "run `newnormal contracts export-schemas` and commit the result"


RECEIVED = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


def test_an_event_without_time_takes_the_receivers_clock_in_every_mode():
    """`time` is optional in CloudEvents: the receiver's injected clock stamps it, never a clock read while
    parsing (the SDK's own default would be the system clock)."""
    no_time = {k: v for k, v in structured().items() if k != "time"}
    ct = {"content-type": "application/cloudevents+json"}
    assert one(parse_http(ct, json.dumps(no_time).encode(), received_at=RECEIVED)).time == RECEIVED
    batch = json.dumps([no_time, {**no_time, "id": "e-2"}]).encode()
    assert {e.time for e in parse_http({"content-type": "application/cloudevents-batch+json"}, batch,
                                       received_at=RECEIVED)} == {RECEIVED}
    headers = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/agencies/dga/x", "ce-agency": "dga",
               "ce-type": "roadmap.milestone.cancelled", "content-type": "application/json"}
    body = b'{"milestone_id": "M-1", "reason": "merged"}'
    assert one(parse_http(headers, body, received_at=RECEIVED)).time == RECEIVED
    kafka_headers = [(k.replace("ce-", "ce_"), v.encode()) for k, v in headers.items()]
    assert parse_kafka(kafka_headers, None, body, received_at=RECEIVED).time == RECEIVED
    assert parse_kafka([], None, json.dumps(no_time).encode(), received_at=RECEIVED).time == RECEIVED
    # A time the sender gave is kept as given.
    given = one(parse_http(ct, json.dumps(structured()).encode(), received_at=RECEIVED))
    assert given.time == datetime.fromisoformat("2026-01-05T09:00:00+07:00")


def test_an_event_without_time_and_no_receipt_time_is_refused_not_stamped():
    with pytest.raises(EventError) as err:
        validate_attributes({k: v for k, v in structured().items() if k not in ("time", "data")}, PLANNED)
    assert err.value.reason == "missing_attribute" and "time" in err.value.detail


def test_to_kafka_writes_the_very_message_the_cloudevents_sdk_writes():
    """`Event.to_kafka` skips the SDK's second validation; its headers, key and bytes stay the SDK's own."""
    from datetime import timedelta, timezone

    from cloudevents.core.bindings import kafka as ce_kafka
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    from services.contracts.envelope import validate_attributes
    from services.simulator.model import World

    world = World(3, datetime(2026, 3, 1, 3, 0, tzinfo=UTC), agencies=12)
    now = datetime(2026, 3, 2, 10, 30, 15, 123456, tzinfo=timezone(timedelta(hours=7)))
    raw = [*world.initial_events(training_history_limit=20)[:60], world.feedback_response(now.astimezone(UTC)),
           world.roadmap_update(now.astimezone(UTC)), world.training_completion(now.astimezone(UTC))]
    raw.append({**raw[-1], "id": "bangkok-offset", "time": now.isoformat(), "traceparent":
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "partitionkey": "dga:mindset"})
    assert len(raw) > 60
    for body in raw:
        attrs = {k: v for k, v in body.items() if k != "data"}
        event = validate_attributes(attrs, body["data"])
        ours = event.to_kafka()
        sdk = ce_kafka.to_structured(CloudEvent(event.attributes(), event.data_dict()), JSONFormat(),
                                     key_mapper=lambda e, event=event: event.partitionkey or event.agency)
        assert (ours.headers, ours.key, ours.value) == (sdk.headers, sdk.key, sdk.value), body["id"]


_ATTRIBUTE_VALUES = st.one_of(
    st.text(max_size=12), st.sampled_from(["", "1.0", "e-1", "dga", "/agencies/dga/plan", "roadmap.milestone.planned",
                                           "application/json", "2026-01-05T09:00:00+07:00", "2026-01-05T09:00:00"]),
    st.integers(-3, 3), st.booleans(), st.none(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_ATTRIBUTE_NAMES = st.sampled_from(["id", "source", "type", "specversion", "time", "subject", "dataschema",
                                    "datacontenttype", "agency", "partitionkey", "traceparent", "Upper", "x_y", "",
                                    "data_base64", "averyveryverylongextensionname"])


def _outcome(obj):
    try:
        event = parse_kafka([], None, json.dumps(obj).encode(), received_at=datetime(2026, 1, 5, 2, 0, tzinfo=UTC))
    except EventError as err:
        return ("refused", err.reason, err.detail, err.event_id)
    return ("event", event)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(_ATTRIBUTE_NAMES, _ATTRIBUTE_VALUES, max_size=4),
       dropped=st.sets(st.sampled_from(["id", "source", "type", "specversion", "time", "agency"]), max_size=2))
def test_parsing_without_the_sdks_event_gives_what_parsing_with_it_gives(monkeypatch, changes, dropped):
    """A structured event is parsed without building the SDK's `CloudEvent` when the SDK surely takes its
    attributes (`_sdk_accepts`); whatever an event holds, the outcome (event, or reason and detail) is the same."""
    from services.contracts import envelope

    obj = {k: v for k, v in {**structured(), **changes}.items() if k not in dropped}
    fast = _outcome(obj)
    with monkeypatch.context() as m:
        m.setattr(envelope, "_sdk_accepts", lambda attrs: False)
        assert _outcome(obj) == fast
