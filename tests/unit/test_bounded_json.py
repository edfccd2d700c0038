"""A batch's length is counted before its items are decoded: safejson.loads_bounded and parse_http's
request-level refusals (no server needed; the HTTP routes are covered in tests/integration/test_request_limits.py)."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts import safejson
from services.contracts.envelope import BATCH, STRUCTURED, EventError, http_mode, parse_http

ZEROS = b"[" + b"0," * 2_400_000 + b"0]"  # the 4.8 MB body of the issue

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)


@given(st.lists(json_values, max_size=12), st.sampled_from(["", " ", "\n\t ", "\r\n"]))
def test_bounded_decoding_equals_json_loads(items, ws):
    text = json.dumps(items, indent=None if not ws else 1).replace("\n", "\n" + ws)
    for data in (text, text.encode(), b"\xef\xbb\xbf" + text.encode()):  # a UTF-8 BOM may lead (RFC 8259 8.1)
        assert safejson.loads_bounded(data, max_items=12) == json.loads(text)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_json_on_the_wire_is_utf8_only(encoding):
    """json.loads would guess UTF-16 and UTF-32 too; RFC 8259 8.1 (and docs/platform.md) say UTF-8 between systems."""
    data = json.dumps([{"title": "แผนงาน"}]).encode(encoding)
    for decode in (safejson.loads, lambda d: safejson.loads_bounded(d, max_items=5)):
        with pytest.raises(ValueError) as err:
            decode(data)
        assert safejson.describe(err.value) == f"the JSON is {encoding.upper()}, not UTF-8: send it as UTF-8"


def test_syntax_errors_name_the_position_once():
    for bad in (b'{"a": "unterminated', b'{"a": "tab\there"}'):
        with pytest.raises(ValueError) as err:
            safejson.loads(bad)
        detail = safejson.describe(err.value)
        assert " at line 1 column " in detail and "at at" not in detail, detail


@given(json_values.filter(lambda v: not isinstance(v, list)))
def test_a_value_that_is_not_an_array_decodes_as_loads_does(value):
    text = json.dumps(value)
    assert safejson.loads_bounded(text.encode(), max_items=1) == json.loads(text)


@pytest.mark.parametrize("bad", [b"[1,]", b"[,1]", b"[1 2]", b"[1]x", b"[", b"[1", b"", b"  ", b"[\"\xff\"]", b"\xff"])
def test_malformed_arrays_are_value_errors(bad):
    with pytest.raises(ValueError):
        safejson.loads_bounded(bad, max_items=5)


def test_too_many_items_is_refused_after_decoding_only_the_limit():
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(safejson.TooManyItems) as info:
        safejson.loads_bounded(ZEROS, max_items=500)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.value.limit == 500
    # The decoded text of the body (4.8 MB) is the only large allocation; 2.4 M decoded items would be > 19 MB.
    assert peak < 2 * len(ZEROS), peak
    assert seconds < 1.0  # generous: it decodes 501 items, not a performance target
    assert safejson.loads_bounded(b"[" + b"0," * 499 + b"0]", max_items=500) == [0] * 500


@pytest.mark.parametrize("body", [b"[" * 50_000, b"[1," + b"[" * 50_000, b"[" + b"{\"a\":" * 40 + b"1" + b"}" * 40 + b"]"])
def test_deep_nesting_is_json_too_deep_never_recursion_error(body):
    with pytest.raises(safejson.JsonTooDeep):
        safejson.loads_bounded(body, max_items=500, max_containers=10**9)


@pytest.mark.parametrize("body", [b"[" * 50_000, b"[" + b"{}," * 40_000 + b"{}]", b'[{"a":[' + b"[]," * 40_000 + b"[]]}]"])
def test_more_containers_than_the_items_can_need_is_refused_before_decoding(body):
    tracemalloc.start()
    with pytest.raises(safejson.TooComplex) as info:
        safejson.loads_bounded(body, max_items=500)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.value.limit == 501 * safejson.CONTAINERS_PER_ITEM
    assert peak < 2 * len(body) + 100_000  # the decoded text only


def test_the_container_budget_fits_honest_items():
    events = [{"data": {"depends_on": [], "x": {"y": [1, {"z": []}]}}, "a": {}} for _ in range(500)]
    assert safejson.loads_bounded(json.dumps(events).encode(), max_items=500) == events


def test_depth_counts_the_array_itself():
    ok = b"[" + b"[" * 31 + b"]" * 31 + b"]"  # 32 levels in all
    assert safejson.loads_bounded(ok, max_items=5)
    with pytest.raises(safejson.JsonTooDeep):
        safejson.loads_bounded(b"[" + ok + b"]", max_items=5)


# --- parse_http: what a request that cannot be read at all is refused with -----------------------------
BATCH_HEADERS = {"Content-Type": BATCH}


def refusal(headers, body, **kw) -> EventError:
    with pytest.raises(EventError) as info:
        parse_http(headers, body, **kw)
    return info.value


@pytest.mark.parametrize(("body", "reason"), [
    (b"{}", "invalid_batch"),
    (b"0", "invalid_batch"),
    (b"[" * 50_000, "too_complex"),
    (b"[0,", "invalid_json"),
    (b"\xff\xfe\x00", "invalid_json"),
    (ZEROS, "too_many_events"),
])
def test_batch_refusals_have_reasons(body, reason):
    err = refusal(BATCH_HEADERS, body, max_events=500)
    assert err.reason == reason
    assert "Error" not in err.detail and "Traceback" not in err.detail


def test_an_empty_batch_is_a_batch_of_nothing():  # "The batch MAY be empty" (HTTP binding 3.3.3)
    assert parse_http(BATCH_HEADERS, b"[]", max_events=500) == parse_http(BATCH_HEADERS, b" [ ] ") == []


def test_zeros_batch_is_refused_quickly():
    started = time.perf_counter()
    assert refusal(BATCH_HEADERS, ZEROS, max_events=500).reason == "too_many_events"
    assert time.perf_counter() - started < 1.0


def test_non_object_items_are_per_event_answers_not_request_failures():
    results = parse_http(BATCH_HEADERS, b'[0, "x", null, [], {"specversion": "1.0"}]', max_events=500)
    assert [r.reason for r in results] == ["invalid_cloudevent"] * 4 + ["missing_attribute"]


@pytest.mark.parametrize("attrs", [{"time": 5}, {"time": "nope"}, {"time": "9999-12-31T23:00:00-12:00"},
                                   {"partitionkey": [1]}, {"subject": {"a": 1}}, {"data_base64": 5, "data": None},
                                   {"id": 5}, {"data": "[" * 1000}])
def test_malformed_attribute_values_are_clear_400s(attrs):
    event = {"specversion": "1.0", "id": "e-1", "source": "/agencies/dga/t", "type": "training.target.set",
             "agency": "dga", "data": {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569,
                                       "headcount": 1}}
    event.update(attrs)
    event = {k: v for k, v in event.items() if v is not None}
    [result] = parse_http({"content-type": STRUCTURED}, json.dumps(event).encode())
    assert isinstance(result, EventError), result
    # a time that leaves the calendar once in UTC is a date's refusal (docs/platform.md, dates)
    assert result.reason in {"invalid_cloudevent", "invalid_attribute", "invalid_data", "date_out_of_range"}
    assert "object of type" not in result.detail and "has no len" not in result.detail


@pytest.mark.parametrize(("headers", "mode"), [
    ({"Content-Type": BATCH}, "batch"), ({"content-type": f"{STRUCTURED}; charset=utf-8"}, "structured"),
    ({"ce-id": "1", "content-type": "application/json"}, "binary"),
])
def test_mode_is_known_from_headers_alone(headers, mode):
    assert http_mode(headers) == mode


def test_unknown_media_type_is_refused_from_headers():
    with pytest.raises(EventError) as info:
        http_mode({"content-type": "text/plain"})
    assert info.value.reason == "unsupported_media_type"


@pytest.mark.parametrize(("body", "error", "words"), [
    (b'{"a": NaN}', safejson.NotJsonNumber, "NaN is not a JSON number"),
    (b'[1, Infinity]', safejson.NotJsonNumber, "Infinity is not a JSON number"),
    (b'{"a": -Infinity}', safejson.NotJsonNumber, "-Infinity is not a JSON number"),
    (b'{"a": 1e400}', safejson.NotJsonNumber, "range of a double"),
    (b'{"a": -2.5E+999}', safejson.NotJsonNumber, "range of a double"),
    (b'{"a": ' + b"9" * 5000 + b"}", safejson.NotJsonNumber, "4300 digits"),
    (b'{"a": "\\ud800"}', safejson.NotUnicode, "unpaired UTF-16 surrogate"),
    (b'{"a": "\\uDFFF\\uD800"}', safejson.NotUnicode, "unpaired UTF-16 surrogate"),  # a pair in the wrong order
    (b'{"\\udc00": 1}', safejson.NotUnicode, "unpaired UTF-16 surrogate"),  # in a key
    (b'{"a": ["x", {"b": "\\ud83d"}]}', safejson.NotUnicode, "unpaired UTF-16 surrogate"),  # nested
    ('{"a": "\ud800"}'.encode("utf-8", "surrogatepass"), safejson.NotUnicode, "unpaired UTF-16 surrogate"),  # raw bytes
    (b'{"agency": "dga", "agency": "rd"}', safejson.DuplicateName, "same name twice"),
    (b'{"a": 1, "\\u0061": 1}', safejson.DuplicateName, "same name twice"),  # the same name once decoded
    (b'[{"d": {"x": [{"y": 1, "z": 2, "y": 1}]}}]', safejson.DuplicateName, "same name twice"),  # nested
    (b'{"a": 1,}', json.JSONDecodeError, "invalid JSON, expecting property name"),
    (b'\xff{}', ValueError, "invalid UTF-8 at byte 0"),
])
def test_what_json_leaves_to_the_reader_is_refused_in_words(body, error, words):
    for read in (safejson.loads, lambda b: safejson.loads_bounded(b, max_items=10)):
        with pytest.raises(error) as info:
            read(body)
        assert words in safejson.describe(info.value)


@pytest.mark.parametrize("body", [b'{"a": "\\ud83d\\ude00 \\u0e01"}', '{"a": "😀 ก"}'.encode(), b'{"a": 1.7e308, "b": -0.0}',
                                  b'{"a": "\\\\ud800"}', b'{"a": ' + b"9" * 4300 + b"}",
                                  b'{"a": {"a": 1}, "A": [{"a": 2}, {"a": 3}]}'])  # a name once per object
def test_valid_json_near_those_edges_is_read(body):
    assert safejson.loads(body) == json.loads(body)


@pytest.mark.parametrize(("odd", "words"), [
    ('"note": "x\\ud800"', "surrogate"),
    ('"note": NaN', "NaN is not a JSON number"),
    ('"note": 1e999', "range of a double"),
    ('"note": ' + "7" * 5000, "4300 digits"),
    ('"agency": "rd"', "same name twice"),  # after the data's own "agency": "dga"
])
def test_what_json_leaves_to_the_reader_refuses_only_its_own_event_in_a_batch(odd, words):
    good = {"specversion": "1.0", "id": "e-1", "source": "/agencies/dga/t", "type": "training.target.set",
            "agency": "dga", "data": {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569,
                                      "headcount": 1}}
    bad = json.dumps({**good, "id": "e-2"})[:-2] + ", " + odd + "}}"
    body = f"[{bad}, {json.dumps(good)}, {bad.replace('e-2', 'e-3')}]".encode()
    results = parse_http(BATCH_HEADERS, body, max_events=500)
    for refused, event_id in ((results[0], "e-2"), (results[2], "e-3")):
        assert isinstance(refused, EventError) and refused.reason == "invalid_json", refused
        assert words in refused.detail and refused.event_id == event_id
    assert not isinstance(results[1], EventError) and results[1].id == "e-1"
    # One event alone (structured mode) is the whole request: refused as such.
    with pytest.raises(EventError) as info:
        parse_http({"content-type": "application/cloudevents+json"}, bad.encode())
    assert info.value.reason == "invalid_json" and words in info.value.detail


def test_a_batch_that_is_not_json_is_refused_whole():
    with pytest.raises(EventError) as info:
        parse_http(BATCH_HEADERS, b'[{"id": "e-1"}, {"id": "e-2",]', max_events=500)
    assert info.value.reason == "invalid_json" and "line 1 column" in info.value.detail


BINARY = {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/agencies/dga/t",
          "ce-type": "training.target.set", "ce-agency": "dga"}
TARGET = json.dumps({"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569, "headcount": 1}).encode()


@pytest.mark.parametrize(("sent", "meant"), [
    ("%E0%B8%81%E0%B8%82", "กข"),                                  # Thai, percent-encoded as the binding asks
    ("%e0%b8%81", "ก"),                                             # lower-case hex is accepted
    ("Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀"),              # the binding's own example
    ("50%25", "50%"),                                               # a percent sign, encoded
    ('"a\\"b c"', 'a"b c'),                                        # a quoted string of older senders, unescaped
    ('"%E0%B8%81"', "ก"),                                           # quoted, then percent-decoded once
    ("%2541", "%41"),                                               # one round of decoding, never two
    ("กข".encode().decode("latin-1"), "กข"),                        # raw UTF-8 bytes, as an ASGI server hands them
    ("a+b/c:d", "a+b/c:d"),
])
def test_binary_mode_headers_are_read_as_the_http_binding_writes_them(sent, meant):
    [event] = parse_http({**BINARY, "ce-subject": sent}, TARGET)
    assert not isinstance(event, EventError), event
    assert event.subject == meant


@pytest.mark.parametrize("sent", ["%C0%A0", "%ED%A0%80", "%FF", "%E0%B8", "\xff"])  # "\xff": a raw byte that is no UTF-8
def test_binary_mode_headers_that_are_not_utf8_once_decoded_are_refused(sent):
    [refused] = parse_http({**BINARY, "ce-subject": sent}, TARGET)
    assert isinstance(refused, EventError) and refused.reason == "invalid_cloudevent"
    assert "ce-subject" in refused.detail and "UTF-8" in refused.detail and refused.event_id == "b-1"


@pytest.mark.parametrize("sent", ["%ZZ", "50%", "%4", "a%%41", "%G0", '"%"'])
def test_binary_mode_headers_with_a_percent_that_starts_no_escape_are_refused(sent):
    [refused] = parse_http({**BINARY, "ce-subject": sent}, TARGET)
    assert isinstance(refused, EventError) and refused.reason == "invalid_cloudevent"
    assert "ce-subject" in refused.detail and "%25" in refused.detail and refused.event_id == "b-1"


def test_an_attribute_header_sent_twice_is_refused_in_http_and_kafka():
    from starlette.datastructures import Headers

    from services.contracts.envelope import parse_kafka

    raw = [(k.encode(), v.encode()) for k, v in BINARY.items()]
    for extra in ((b"ce-source", b"/agencies/rd/t"), (b"Content-Type", b"text/plain")):
        [refused] = parse_http(Headers(raw=[*raw, extra]), TARGET)
        assert isinstance(refused, EventError) and refused.reason == "invalid_cloudevent"
        assert f"header {extra[0].decode().lower()} is sent more than once" in refused.detail
    kafka = [(k.decode().replace("ce-", "ce_"), v) for k, v in raw]
    assert parse_kafka(kafka, b"dga", TARGET).id == "b-1"
    with pytest.raises(EventError) as info:
        parse_kafka([*kafka, ("ce_agency", b"rd")], b"dga", TARGET)
    assert info.value.reason == "invalid_cloudevent" and "ce_agency is sent more than once" in info.value.detail


# --- an item's size bounded by its text: 5 bytes of encoding per character at most ---------------------------------
_SHORT_NUMBERS = [f"{sign}{m}{point}e{e}" for sign in ("", "-") for m in ("1", "9", "12") for point in ("", ".5")
                  for e in (*range(-30, 30), 100, 308)]


@pytest.mark.parametrize("token", _SHORT_NUMBERS)
def test_a_number_token_grows_at_most_four_and_a_half_times_when_encoded_again(token):
    assert len(json.dumps(json.loads(token))) <= 4.5 * len(token)


@given(json_values)
def test_the_encoded_size_of_an_item_is_within_five_times_its_text(value):
    from services.contracts.envelope import MAX_ENCODING_GROWTH

    for text in (json.dumps(value, separators=(",", ":"), ensure_ascii=False),
                 json.dumps([value, value], separators=(",", ":"), ensure_ascii=False)):
        lengths: list[int] = []
        items = safejson.loads_bounded(f"[{text}]", max_items=None, lengths=lengths)
        assert len(lengths) == len(items) == 1 and lengths[0] == len(text)
        assert len(json.dumps(items[0], ensure_ascii=False).encode()) <= MAX_ENCODING_GROWTH * lengths[0]
    worst = "[" + ",".join(["1e15"] * 50) + "]"  # the densest growth: short number tokens
    assert len(json.dumps(json.loads(worst), ensure_ascii=False).encode()) <= MAX_ENCODING_GROWTH * len(worst)


def test_an_item_of_a_batch_over_the_event_size_is_still_measured_and_refused():
    big = {"specversion": "1.0", "id": "big", "source": "/agencies/dga/x", "type": "feedback.response.submitted",
           "agency": "dga", "data": {"comment": "ก" * 30_000}}
    small = {**big, "id": "small", "data": {"comment": "ก" * 10}}
    results = parse_http({"content-type": BATCH}, json.dumps([small, big], ensure_ascii=False).encode())
    assert isinstance(results[1], EventError) and results[1].reason == "event_too_large"
    assert not (isinstance(results[0], EventError) and results[0].reason == "event_too_large")


@pytest.mark.parametrize("value,stored", [("abc", "abc"), (True, "true"), (False, "false"), (7, "7"),
                                          (-(2**31), str(-(2**31))), (10**40, str(10**40)), (2.0, "2"), (None, None)])
def test_an_extension_attribute_is_stored_as_its_cloudevents_canonical_string(value, stored):
    event = {"specversion": "1.0", "id": "x1", "source": "/agencies/dga/x", "type": "feedback.response.submitted",
             "agency": "dga", "time": "2026-03-01T10:00:00+07:00", "traceflag": value,
             "data": {"agency": "dga", "service_name": "x", "channel": "online_web", "age_group": "25_34",
                      "satisfaction": 4, "tech_difficulty": "none", "aware_of_digital_channels": True,
                      "submitted_at": "2026-03-01T10:00:00+07:00"}}
    [parsed] = parse_http({"content-type": STRUCTURED}, json.dumps(event).encode())
    assert not isinstance(parsed, EventError), parsed
    assert parsed.extensions.get("traceflag") == stored  # null: as if not set
    for odd in ({"a": 1}, [1], 1.5):
        [refused] = parse_http({"content-type": STRUCTURED}, json.dumps({**event, "traceflag": odd}).encode())
        assert isinstance(refused, EventError) and refused.reason in ("invalid_attribute", "invalid_cloudevent"), odd
    [both] = parse_http({"content-type": STRUCTURED}, json.dumps({**event, "data_base64": "e30="}).encode())
    assert isinstance(both, EventError) and both.detail == "an event carries data or data_base64, never both"
    [number] = parse_http({"content-type": STRUCTURED}, json.dumps({**event, "specversion": 1.0}).encode())
    assert number.reason == "unsupported_specversion" and number.detail == 'specversion must be the string "1.0"'
