"""Small value types shared by several event models."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic_core import PydanticCustomError


def _aware(value: datetime) -> datetime:
    # A naive time is ambiguous ("a day" is an Asia/Bangkok day): refuse it rather than guess.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone offset (RFC 3339), e.g. 2026-05-01T09:00:00+07:00")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
UNKNOWN_AGENCY = "unknown_agency"  # the validation error type (and problem reason) of an agency code not registered


def _agency_code(value: str) -> str:
    from services.contracts.agencies import get_registry

    if value not in get_registry():
        # Its own reason code: an unknown agency is answered `unknown_agency` wherever it is named.
        raise PydanticCustomError(UNKNOWN_AGENCY, "is not an agency code of the registry (GET /v1/agencies)")
    return value


class SchemaKeywords:
    """`Annotated` metadata adding keywords to a type's JSON Schema when one is generated (lazily: the agency
    registry is read then, not at import), so the published schemas say what the validators enforce."""

    def __init__(self, keywords: Callable[[], dict[str, Any]]):
        self.keywords = keywords

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = handler(core_schema)
        schema.update(self.keywords())
        return schema


def _agency_codes() -> dict[str, Any]:
    from services.contracts.agencies import get_registry

    return {"enum": sorted(a.code for a in get_registry().all())}


AgencyCode = Annotated[str, AfterValidator(_agency_code), SchemaKeywords(_agency_codes)]


# What pydantic's `str_strip_whitespace` strips (Unicode White_Space), spelled out: `\S` differs between regex
# dialects (ECMA-262 counts neither U+0085 nor U+FEFF alike with Python), so a schema saying "\S" let a client's
# validator pass a text that the model strips to nothing.
STRIPPED = "\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = f"[^{STRIPPED}]"  # JSON Schema `pattern`: holds a character that stripping keeps
# Every character some dialect counts as space (pydantic/Rust and ECMA-262 White_Space, Python's U+001C-U+001F):
# a pattern that forbids spaces spells them out, so that a schema validator and ours refuse the same texts.
ANY_SPACE = STRIPPED + "\u001c-\u001f\ufeff"


def _event_data_schema(schema: dict[str, Any], cls: type) -> None:
    # Strings are stripped before min_length is checked: a required text needs a character stripping keeps.
    for prop in schema.get("properties", {}).values():
        for branch in (prop, *prop.get("anyOf", ())):
            if branch.get("type") == "string" and branch.get("minLength", 0) >= 1 and "pattern" not in branch:
                branch["pattern"] = NOT_BLANK
    # Rules across fields that a model validator checks and JSON Schema can state (e.g. "one of these two").
    schema.update(copy.deepcopy(getattr(cls, "schema_rules", {})))


def _json_type_ok(value: Any, types: frozenset[str]) -> bool:
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return bool(types & {"integer", "number"})
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    if isinstance(value, str):
        return "string" in types
    if isinstance(value, date):  # our own code builds models from date and datetime objects
        return "date" in types
    if value is None:
        return "null" in types
    if isinstance(value, list | tuple):
        return "array" in types
    return "object" in types


def _types_of(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return _types_of(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    if "anyOf" in schema:
        return set().union(*(_types_of(branch, defs) for branch in schema["anyOf"]))
    declared = schema.get("type")
    if declared is None:
        return {"string", "integer", "number", "boolean", "null", "array", "object"}
    types = {declared} if isinstance(declared, str) else set(declared)
    if schema.get("format") in ("date", "date-time"):
        types.add("date")
    return types


class EventData(BaseModel):
    """Base of every event's `data`: strict about unknown fields so typos are caught at the edge."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True,
                              json_schema_extra=_event_data_schema)
    schema_rules: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        # Pydantic's lax mode would take 0 as a date, "5" as a number and "yes" as true: a value must already be
        # of the JSON type the published schema states (what an integrator's validator checks too).
        if isinstance(data, dict):
            fields = _field_json_types(cls)
            for name, value in data.items():
                checked = fields.get(name)  # an unknown name is refused by the model (extra="forbid")
                if checked is not None and type(value) not in checked[1] and not _json_type_ok(value, checked[0]):
                    raise ValueError(f"{name} must be {' or '.join(sorted(checked[0] - {'date'}))}")
        return data


# The Python types JSON decoding gives each JSON type, that are that type whatever their value (a float is an
# integer only when whole, a date only comes from our own code: those take `_json_type_ok`).
_EXACT_TYPES: dict[str, tuple[type, ...]] = {"boolean": (bool,), "integer": (int,), "number": (int, float),
                                             "string": (str,), "null": (type(None),), "array": (list,),
                                             "object": (dict,)}


@functools.cache
def _field_json_types(cls: type[EventData]) -> dict[str, tuple[frozenset[str], frozenset[type]]]:
    """Per field: its JSON types, and the Python types that pass at once (checked by `type(value) in`)."""
    schema = cls.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    out = {}
    for name, prop in schema.get("properties", {}).items():
        types = frozenset(_types_of(prop, defs))
        out[name] = (types, frozenset(t for json_type in types for t in _EXACT_TYPES.get(json_type, ())))
    return out


class Workstream(StrEnum):
    """The five points of the Cabinet decision on New Normal public-sector work."""

    roadmap_governance = "roadmap_governance"
    regulation_reform = "regulation_reform"
    personnel_readiness = "personnel_readiness"
    technology_access = "technology_access"
    public_awareness = "public_awareness"


class Competency(StrEnum):
    digital_technology = "digital_technology"
    academic_knowledge = "academic_knowledge"
    mindset = "mindset"
    public_service = "public_service"


class Channel(StrEnum):
    online_web = "online_web"
    mobile_app = "mobile_app"
    line_official_account = "line_official_account"
    call_center = "call_center"
    walk_in = "walk_in"
    mobile_unit = "mobile_unit"


class AgeGroup(StrEnum):
    under_18 = "under_18"
    age_18_24 = "18_24"
    age_25_34 = "25_34"
    age_35_44 = "35_44"
    age_45_59 = "45_59"
    age_60_plus = "60_plus"


class TechDifficulty(StrEnum):
    none = "none"
    some = "some"
    severe = "severe"
