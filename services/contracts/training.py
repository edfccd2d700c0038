"""`data` of the training events: civil-servant readiness targets and course completions."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from services.contracts.common_types import AgencyCode, Competency, EventData
from services.contracts.dates import CompletedOnReadable
from services.contracts.thai_calendar import is_valid_thai_national_id


class TrainingTargetSet(EventData):
    agency: AgencyCode
    competency: Competency
    fiscal_year: int = Field(ge=2560, le=2600, description="Thai budget year, Buddhist era (2569 = 1 Oct 2025 – 30 Sep 2026)")
    headcount: int = Field(ge=0, le=2_000_000)


class TrainingCourseCompleted(EventData):
    agency: AgencyCode
    learner_ref: str = Field(min_length=1, max_length=200, description="opaque pseudonym of the learner, never a national ID")
    course_id: str = Field(min_length=1, max_length=200)
    course_title: str | None = Field(default=None, max_length=500)
    competency: Competency
    hours: float = Field(ge=0, le=1000)
    completed_on: CompletedOnReadable
    passed: bool
    score: float | None = Field(default=None, ge=0, le=100)

    @field_validator("learner_ref")
    @classmethod
    def _not_national_id(cls, value: str) -> str:
        # A real ID here would make the training store a register of citizens: refuse it at the edge.
        if is_valid_thai_national_id(value):
            raise ValueError("learner_ref looks like a Thai national ID: send an opaque pseudonym instead")
        return value


class TrainingCompletionVoided(EventData):
    """Retraction of one `training.course.completed` (xAPI `voided`, or an agency correcting a wrong record):
    the training projections treat the referenced completion as never sent, exactly once."""
    agency: AgencyCode
    voided_source: str = Field(min_length=1, max_length=500, description="`source` of the completion retracted, "
                               "under the same agency's namespace /agencies/<agency>/")
    voided_id: str = Field(min_length=1, max_length=500, description="`id` of the completion retracted")

    @model_validator(mode="after")
    def _own_namespace(self) -> TrainingCompletionVoided:
        # One agency may not retract another's facts: the reference must lie in its own source namespace.
        if not self.voided_source.startswith(f"/agencies/{self.agency}/"):
            raise ValueError(f"voided_source must start with /agencies/{self.agency}/")
        return self
