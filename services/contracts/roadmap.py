"""`data` of the roadmap events: what agency systems report about programme milestones,
and the derived alerts only the roadmap service publishes."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, ClassVar

from pydantic import Field, model_validator

from services.contracts.common_types import NOT_BLANK, AgencyCode, EventData, Workstream
from services.contracts.dates import DoneOn, DueDate, GregorianDate, ObservedAt, PlausibleDatetime
from services.contracts.problems import worded

MilestoneId = Annotated[str, Field(min_length=1, max_length=64, pattern=worded(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]*$", "must start with a letter or digit and hold only letters, digits and . _ : -"))]


class MilestonePlanned(EventData):
    milestone_id: MilestoneId
    title_th: str | None = Field(default=None, max_length=300)
    title_en: str | None = Field(default=None, max_length=300)
    workstream: Workstream
    owner_agency: AgencyCode
    due_date: DueDate
    weight: float = Field(default=1.0, gt=0, le=100)
    depends_on: list[MilestoneId] = Field(default_factory=list, max_length=50)
    description: str | None = Field(default=None, max_length=4000)

    schema_rules: ClassVar[dict[str, Any]] = {"anyOf": [
        {"required": [name], "properties": {name: {"type": "string", "pattern": NOT_BLANK}}}
        for name in ("title_th", "title_en")]}

    @model_validator(mode="after")
    def _has_title(self) -> MilestonePlanned:
        if not (self.title_th or self.title_en):
            raise ValueError("a milestone needs a title: title_th and/or title_en")
        if self.milestone_id in self.depends_on:
            raise ValueError("a milestone cannot depend on itself")
        return self


class MilestoneProgressed(EventData):
    milestone_id: MilestoneId
    percent_complete: float = Field(ge=0, le=100)
    as_of: ObservedAt
    note: str | None = Field(default=None, max_length=2000)


class MilestoneCompleted(EventData):
    milestone_id: MilestoneId
    completed_on: DoneOn
    evidence: str | None = Field(default=None, max_length=2000)


class MilestoneRescheduled(EventData):
    milestone_id: MilestoneId
    new_due_date: DueDate
    reason: str = Field(min_length=1, max_length=2000)
    approved_by: str | None = Field(default=None, max_length=200)


class MilestoneCancelled(EventData):
    milestone_id: MilestoneId
    reason: str = Field(min_length=1, max_length=2000)


class FactRetracted(EventData):
    """A correction: the milestone's fact sent as event (`retracted_source`, `retracted_id`) is to be treated as
    never sent. Sent from the retracted fact's own agency namespace (or with programme-office authority); the
    retraction is itself a fact with its own key, so it counts once however often it is re-sent."""

    milestone_id: MilestoneId
    retracted_source: str = Field(min_length=1, max_length=500, description="`source` of the event retracted")
    retracted_id: str = Field(min_length=1, max_length=500, description="`id` of the event retracted")
    reason: str | None = Field(default=None, max_length=2000)


class MilestoneAlert(EventData):
    """Common shape of the derived alerts (at_risk, missed, recovered) on `roadmap.alerts`."""

    milestone_id: MilestoneId
    title_th: str | None = None
    title_en: str | None = None
    workstream: Workstream
    owner_agency: AgencyCode
    due_date: GregorianDate
    percent_complete: float = Field(default=0, ge=0, le=100)
    days_late: int = Field(default=0, ge=0)
    reason: str | None = None
    # A forecast from the progress rate, not a date anyone sent: it may lie far ahead and is not year-checked.
    projected_finish: date | None = None
    completed_on: GregorianDate | None = None
    detected_at: PlausibleDatetime


class MilestoneAcknowledged(EventData):
    """An owner (or an escalation contact) acknowledged a notification about the milestone's missed or at-risk
    state for one due date. Published by the notifier (`/services/notifier`) on `roadmap.events`; the roadmap
    records it in the milestone's history, and a forecast later than its projection becomes the projected finish.
    `acknowledged_by` is the routing recipient id (a role such as `dga-owner`), never an address."""

    milestone_id: MilestoneId
    owner_agency: AgencyCode
    due_date: GregorianDate
    alert_type: str = Field(pattern=worded(r"^(missed|at_risk)$", "must be one of 'missed', 'at_risk'"))
    notification_id: str = Field(min_length=1, max_length=100)
    acknowledged_by: str = Field(min_length=1, max_length=100)
    acknowledged_by_name: str | None = Field(default=None, max_length=300)
    acknowledged_at: PlausibleDatetime
    note: str | None = Field(default=None, max_length=1000, description="recovery note, personal identifiers redacted")
    forecast_completion: DueDate | None = None


class MilestoneRebaselined(MilestoneAlert):
    """The missed due date `due_date` was replaced by `new_due_date` (a reschedule or re-plan after the miss)."""

    new_due_date: GregorianDate | None = None


class MilestoneAtRisk(MilestoneAlert):
    pass


class MilestoneMissed(MilestoneAlert):
    pass


class MilestoneRecovered(MilestoneAlert):
    pass


# The reasons the roadmap service states for a status or an alert (`status_reasons`, an alert's `reason`), in the
# words people read: Thai, English.
REASON_LABELS: dict[str, tuple[str, str]] = {
    "deadline_passed": ("เลยกำหนดแล้ว", "deadline passed"),
    "projected_finish_after_due": ("คาดว่าจะเสร็จหลังกำหนด", "projected to finish after the due date"),
    "owner_forecast_after_due": ("หน่วยงานคาดว่าจะเสร็จหลังกำหนด", "the owner forecasts finishing after the due date"),
    "progress_stalled": ("ไม่มีความคืบหน้า", "progress stalled"),
    "dependency_at_risk_or_missed": ("หมุดหมายที่ต้องเสร็จก่อนเสี่ยงหรือพลาดกำหนด", "a milestone it depends on is at risk or missed"),
    "completed_after_deadline": ("เสร็จหลังกำหนด", "completed after the due date"),
    "due_date_moved_after_miss": ("เลื่อนกำหนดหลังพลาดกำหนด", "due date moved after it was missed"),
    "no_milestones": ("ยังไม่มีหมุดหมาย", "no milestones yet"),
}


def reason_words(reason: str | None) -> tuple[str, str] | None:
    """An alert's `reason` as people read it (Thai, English): the labels of its codes (comma-separated), or, when it
    is not a list of codes (the agency's own reason for moving a due date), the agency's words as they are."""
    if not reason or not reason.strip():
        return None
    codes = [c.strip() for c in reason.split(",")]
    if all(c in REASON_LABELS for c in codes):
        return codes_in_words(codes)
    return reason.strip(), reason.strip()


def codes_in_words(codes: list[str]) -> tuple[str, str]:
    """Reason codes as people read them (Thai, English); a code without a label is shown as it is."""
    return ("; ".join(REASON_LABELS.get(c, (c, c))[0] for c in codes),
            "; ".join(REASON_LABELS.get(c, (c, c))[1] for c in codes))
