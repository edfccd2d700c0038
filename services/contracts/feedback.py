"""`data` of the citizen feedback events."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from services.contracts.common_types import AgeGroup, AgencyCode, Channel, EventData, TechDifficulty
from services.contracts.dates import ObservedAt


def _province_codes() -> dict[str, Any]:
    from services.contracts.provinces import PROVINCE_CODES

    return {"enum": sorted(PROVINCE_CODES)}


class FeedbackResponseSubmitted(EventData):
    agency: AgencyCode
    service_name: str = Field(min_length=1, max_length=200)
    channel: Channel
    age_group: AgeGroup | None = None
    birth_year: int | None = Field(default=None, ge=1900, le=2700, description="Gregorian or Buddhist era; converted to age_group at intake and never stored")
    satisfaction: int = Field(ge=1, le=5)
    ease: int | None = Field(default=None, ge=1, le=5)
    trust: int | None = Field(default=None, ge=1, le=5)
    tech_difficulty: TechDifficulty
    aware_of_digital_channels: bool
    province: str | None = Field(default=None, description="ISO 3166-2:TH code, e.g. TH-10 for Bangkok",
                                 json_schema_extra=lambda schema: schema["anyOf"][0].update(_province_codes()))
    comment: str | None = Field(default=None, max_length=4000)
    submitted_at: ObservedAt

    schema_rules: ClassVar[dict[str, Any]] = {"anyOf": [
        {"required": ["age_group"], "properties": {"age_group": {"not": {"type": "null"}}}},
        {"required": ["birth_year"], "properties": {"birth_year": {"type": "integer"}}}]}

    @model_validator(mode="after")
    def _check(self) -> FeedbackResponseSubmitted:
        if self.age_group is None and self.birth_year is None:
            raise ValueError("age_group or birth_year is required")
        if self.province is not None:
            from services.contracts.provinces import is_province

            if not is_province(self.province):
                # The value is not quoted back: a free-text answer here could hold personal data.
                raise ValueError("unknown province: use an ISO 3166-2:TH code such as TH-10")
        return self
