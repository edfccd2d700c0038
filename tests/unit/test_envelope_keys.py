"""The stored key of an event (`document_id`): one string for (source, id) that never stands for two events, and the
records stored under the earlier {source, id} document keys map onto it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts.envelope import KEY_SEPARATOR, EventError, document_id, legacy_document_id, parse_http

SOURCES = st.text(min_size=1, max_size=30)  # anything, the separator included: the key does not rely on the intake
IDS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)


@given(SOURCES, IDS, SOURCES, IDS)
def test_two_events_share_a_key_only_when_they_share_source_and_id(s1, i1, s2, i2):
    assert (document_id(s1, i1) == document_id(s2, i2)) == ((s1, i1) == (s2, i2))


@given(SOURCES, IDS)
def test_a_key_splits_back_at_its_last_separator(source, id):
    assert tuple(document_id(source, id).rsplit(KEY_SEPARATOR, 1)) == (source, id)


def test_old_document_keys_map_onto_the_string_keys_and_nothing_else_changes():
    assert legacy_document_id({"source": "/agencies/dga/x", "id": "e-1"}) == document_id("/agencies/dga/x", "e-1")
    for other in ("already-a-string", {"topic": "t", "offset": 1}, {"source": "s"}, 7):
        assert legacy_document_id(other) == other


def _parsed(**attrs: str) -> object:
    event = {"specversion": "1.0", "id": "e-1", "source": "/agencies/dga/a", "type": "training.target.set",
             "agency": "dga", "data": {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569,
                                       "headcount": 1}, **attrs}
    [result] = parse_http({"content-type": "application/cloudevents+json"}, json.dumps(event).encode())
    return result


@pytest.mark.parametrize("attrs", [
    {"id": f"b{KEY_SEPARATOR}c"},  # an id holding the separator: no other split of a key reaches the store
    {"source": f"/agencies/dga/a{KEY_SEPARATOR}b"},  # control characters in a source
    {"source": "/agencies/dga/a\nINFO forged log line"}, {"source": "/agencies/dga/a b"},
    {"source": "/agencies/dga/\u0085x"}, {"source": "/agencies/dga/" + "x" * 500},
])
def test_an_id_or_source_with_control_characters_whitespace_or_past_its_length_is_refused(attrs):
    result = _parsed(**attrs)
    assert isinstance(result, EventError) and result.reason == "invalid_attribute", result


def test_a_source_in_thai_within_its_length_is_taken():
    assert not isinstance(_parsed(source="/agencies/dga/แบบสอบถาม"), EventError)
