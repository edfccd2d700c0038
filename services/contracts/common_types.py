"""Small value types shared by several event models."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _aware(value: datetime) -> datetime:
    # A naive time is ambiguous ("a day" is an Asia/Bangkok day): refuse it rather than guess.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone offset (RFC 3339), e.g. 2026-05-01T09:00:00+07:00")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


def _agency_code(value: str) -> str:
    from services.contracts.agencies import get_registry

    if value not in get_registry():
        raise ValueError(f"unknown agency code {value!r}: see the agency registry (GET /v1/agencies)")
    return value


AgencyCode = Annotated[str, AfterValidator(_agency_code)]


class EventData(BaseModel):
    """Base of every event's `data`: strict about unknown fields so typos are caught at the edge."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


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
