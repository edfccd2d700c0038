"""Catalogue of event types: each CloudEvents `type` with its `data` model and its topic."""

from __future__ import annotations

from dataclasses import dataclass

from services.contracts import feedback, reports, roadmap, topics, training
from services.contracts.common_types import EventData

# The CloudEvents `type` of every event: services import these names, never spell the strings out.
MILESTONE_PLANNED = "roadmap.milestone.planned"
MILESTONE_PROGRESSED = "roadmap.milestone.progressed"
MILESTONE_COMPLETED = "roadmap.milestone.completed"
MILESTONE_RESCHEDULED = "roadmap.milestone.rescheduled"
MILESTONE_CANCELLED = "roadmap.milestone.cancelled"
FACT_RETRACTED = "roadmap.fact.retracted"
MILESTONE_AT_RISK = "roadmap.milestone.at_risk"
MILESTONE_MISSED = "roadmap.milestone.missed"
MILESTONE_RECOVERED = "roadmap.milestone.recovered"
MILESTONE_ACKNOWLEDGED = "roadmap.milestone.acknowledged"
MILESTONE_REBASELINED = "roadmap.milestone.rebaselined"
TRAINING_TARGET_SET = "training.target.set"
TRAINING_COURSE_COMPLETED = "training.course.completed"
TRAINING_COMPLETION_VOIDED = "training.course.completion_voided"
FEEDBACK_RESPONSE_SUBMITTED = "feedback.response.submitted"
REPORT_QUARTERLY_GENERATED = "reports.quarterly.generated"


@dataclass(frozen=True)
class EventType:
    name: str
    model: type[EventData]
    topic: str
    # Derived events are published by our own services only; agencies may not send them.
    derived: bool = False
    version: int = 1

    @property
    def dataschema(self) -> str:
        # A URI that changes when the schema changes incompatibly (CloudEvents `dataschema`).
        return f"urn:newnormal:schema:{self.name}:v{self.version}"


_TYPES = [
    EventType(MILESTONE_PLANNED, roadmap.MilestonePlanned, topics.ROADMAP_EVENTS),
    EventType(MILESTONE_PROGRESSED, roadmap.MilestoneProgressed, topics.ROADMAP_EVENTS),
    EventType(MILESTONE_COMPLETED, roadmap.MilestoneCompleted, topics.ROADMAP_EVENTS),
    EventType(MILESTONE_RESCHEDULED, roadmap.MilestoneRescheduled, topics.ROADMAP_EVENTS),
    EventType(MILESTONE_CANCELLED, roadmap.MilestoneCancelled, topics.ROADMAP_EVENTS),
    EventType(FACT_RETRACTED, roadmap.FactRetracted, topics.ROADMAP_EVENTS),
    EventType(MILESTONE_AT_RISK, roadmap.MilestoneAtRisk, topics.ROADMAP_ALERTS, derived=True),
    EventType(MILESTONE_MISSED, roadmap.MilestoneMissed, topics.ROADMAP_ALERTS, derived=True),
    EventType(MILESTONE_RECOVERED, roadmap.MilestoneRecovered, topics.ROADMAP_ALERTS, derived=True),
    # A missed due date replaced by a new one: that miss's reminders and escalation end (a new chain if missed again).
    EventType(MILESTONE_REBASELINED, roadmap.MilestoneRebaselined, topics.ROADMAP_ALERTS, derived=True),
    # An owner acknowledged a missed or at-risk notification: published by the notifier, recorded by the roadmap.
    EventType(MILESTONE_ACKNOWLEDGED, roadmap.MilestoneAcknowledged, topics.ROADMAP_EVENTS, derived=True),
    EventType(TRAINING_TARGET_SET, training.TrainingTargetSet, topics.TRAINING_EVENTS),
    EventType(TRAINING_COURSE_COMPLETED, training.TrainingCourseCompleted, topics.TRAINING_EVENTS),
    EventType(TRAINING_COMPLETION_VOIDED, training.TrainingCompletionVoided, topics.TRAINING_EVENTS),
    EventType(FEEDBACK_RESPONSE_SUBMITTED, feedback.FeedbackResponseSubmitted, topics.FEEDBACK_EVENTS),
    EventType(REPORT_QUARTERLY_GENERATED, reports.QuarterlyReportGenerated, topics.REPORTS_EVENTS, derived=True),
]

EVENT_TYPES: dict[str, EventType] = {t.name: t for t in _TYPES}

# What agencies may send about milestones (HTTP intake); the roadmap consumer also takes the notifier's events.
ROADMAP_INPUT_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.ROADMAP_EVENTS and not t.derived)
ROADMAP_CONSUMED_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.ROADMAP_EVENTS)
ROADMAP_ALERT_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.ROADMAP_ALERTS)
TRAINING_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.TRAINING_EVENTS)
FEEDBACK_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.FEEDBACK_EVENTS)
REPORT_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.REPORTS_EVENTS)

# The `data` field that names the agency, where the data names one; it must equal the `agency` attribute.
DATA_AGENCY_FIELD = {
    MILESTONE_PLANNED: "owner_agency",
    TRAINING_TARGET_SET: "agency",
    TRAINING_COURSE_COMPLETED: "agency",
    TRAINING_COMPLETION_VOIDED: "agency",
    FEEDBACK_RESPONSE_SUBMITTED: "agency",
    MILESTONE_AT_RISK: "owner_agency",
    MILESTONE_MISSED: "owner_agency",
    MILESTONE_RECOVERED: "owner_agency",
    MILESTONE_REBASELINED: "owner_agency",
    MILESTONE_ACKNOWLEDGED: "owner_agency",
}
