"""Catalogue of event types: each CloudEvents `type` with its `data` model and its topic."""

from __future__ import annotations

from dataclasses import dataclass

from services.contracts import feedback, roadmap, topics, training
from services.contracts.common_types import EventData


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
    EventType("roadmap.milestone.planned", roadmap.MilestonePlanned, topics.ROADMAP_EVENTS),
    EventType("roadmap.milestone.progressed", roadmap.MilestoneProgressed, topics.ROADMAP_EVENTS),
    EventType("roadmap.milestone.completed", roadmap.MilestoneCompleted, topics.ROADMAP_EVENTS),
    EventType("roadmap.milestone.rescheduled", roadmap.MilestoneRescheduled, topics.ROADMAP_EVENTS),
    EventType("roadmap.milestone.cancelled", roadmap.MilestoneCancelled, topics.ROADMAP_EVENTS),
    EventType("roadmap.milestone.at_risk", roadmap.MilestoneAtRisk, topics.ROADMAP_ALERTS, derived=True),
    EventType("roadmap.milestone.missed", roadmap.MilestoneMissed, topics.ROADMAP_ALERTS, derived=True),
    EventType("roadmap.milestone.recovered", roadmap.MilestoneRecovered, topics.ROADMAP_ALERTS, derived=True),
    EventType("training.target.set", training.TrainingTargetSet, topics.TRAINING_EVENTS),
    EventType("training.course.completed", training.TrainingCourseCompleted, topics.TRAINING_EVENTS),
    EventType("feedback.response.submitted", feedback.FeedbackResponseSubmitted, topics.FEEDBACK_EVENTS),
]

EVENT_TYPES: dict[str, EventType] = {t.name: t for t in _TYPES}

ROADMAP_INPUT_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.ROADMAP_EVENTS)
ROADMAP_ALERT_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.ROADMAP_ALERTS)
TRAINING_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.TRAINING_EVENTS)
FEEDBACK_TYPES = frozenset(t.name for t in _TYPES if t.topic == topics.FEEDBACK_EVENTS)

# The `data` field that names the agency, where the data names one; it must equal the `agency` attribute.
DATA_AGENCY_FIELD = {
    "roadmap.milestone.planned": "owner_agency",
    "training.target.set": "agency",
    "training.course.completed": "agency",
    "feedback.response.submitted": "agency",
    "roadmap.milestone.at_risk": "owner_agency",
    "roadmap.milestone.missed": "owner_agency",
    "roadmap.milestone.recovered": "owner_agency",
}
