"""A required text's published pattern says exactly what the models refuse after stripping: the schema's
`pattern` (NOT_BLANK) matches a text iff pydantic's `str_strip_whitespace` leaves something of it."""

from __future__ import annotations

import re
import sys

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.contracts.common_types import NOT_BLANK
from services.contracts.events import EVENT_TYPES
from services.notifier.contacts import ONE_LINE_NOT_BLANK, AgencyContacts, Contact


class Required(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)
    text: str = Field(min_length=1)


def blank_to_pydantic(c: str) -> bool:
    try:
        Required(text=c)
    except ValidationError:
        return True
    return False


def test_the_pattern_matches_every_character_stripping_keeps_and_no_other():
    pattern = re.compile(NOT_BLANK)
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        c = chr(code)
        assert (pattern.search(c) is None) == blank_to_pydantic(c), hex(code)
    # The case a fuzzer found: U+0085 (NEL) passed the former `\S` and was stripped to nothing.
    assert pattern.search("\u0085") is None and pattern.search(" \u3000x ")


def test_every_required_event_text_and_a_contact_name_publish_it():
    published = [prop for t in EVENT_TYPES.values()
                 for prop in t.model.model_json_schema().get("properties", {}).values()
                 for prop in (prop, *prop.get("anyOf", ())) if prop.get("type") == "string" and prop.get("minLength")]
    assert published and all(p.get("pattern") for p in published)
    assert any(p["pattern"] == NOT_BLANK for p in published)
    contact = AgencyContacts.model_json_schema()["$defs"]["Contact"]["properties"]["name"]
    assert contact["pattern"] == ONE_LINE_NOT_BLANK


def test_a_contact_name_is_one_line_that_is_not_blank():
    """What NOT_BLANK refuses, and any C0 control character or DEL inside (a CR LF in a name greeted in messages)."""
    one_line = re.compile(ONE_LINE_NOT_BLANK)
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        c = chr(code)
        control = code < 0x20 or code == 0x7F
        assert (one_line.search(f"a{c}b") is not None) == (not control), hex(code)
        assert (one_line.search(c) is not None) == (re.search(NOT_BLANK, c) is not None and not control), hex(code)
    for name in ("P\r\nBcc: x@evil.example", "a\x00b", "ผอ.\tกอง"):
        try:
            Contact(name=name, email="owner@dga.go.th")
        except ValidationError:
            continue
        raise AssertionError(f"{name!r} accepted as a contact name")
    assert Contact(name="  ผอ. กองแผน  ", email="owner@dga.go.th").name == "ผอ. กองแผน"


def test_the_xapi_account_and_a_milestone_title_use_it_in_schema_and_validator():
    from services.contracts.roadmap import MilestonePlanned
    from services.training import xapi

    assert {b["properties"][n]["pattern"] for b in MilestonePlanned.model_json_schema()["anyOf"] for n in b["properties"]} \
        == {NOT_BLANK}
    for blank in ("\u0085", "\u3000 ", "\t"):  # blank to the validator, so never published as valid
        assert re.search(NOT_BLANK, blank) is None
        try:
            xapi.ifi_of({"account": {"homePage": "https://lms.example", "name": blank}})
        except xapi.StatementError as err:
            assert err.reason == "malformed_statement"
        else:
            raise AssertionError(f"{blank!r} accepted as an account name")
    # A control character that is not White_Space (Python's \s counts U+001C) is a name, as the schema says.
    assert xapi.ifi_of({"account": {"homePage": "https://lms.example", "name": "\u001c"}})[0] == "account"
