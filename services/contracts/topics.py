"""Kafka topic names: the one list every service and test agrees on."""

ROADMAP_EVENTS = "roadmap.events"
ROADMAP_ALERTS = "roadmap.alerts"
TRAINING_EVENTS = "training.events"
FEEDBACK_EVENTS = "feedback.events"
REPORTS_EVENTS = "reports.events"

ALL_TOPICS = (ROADMAP_EVENTS, ROADMAP_ALERTS, TRAINING_EVENTS, FEEDBACK_EVENTS, REPORTS_EVENTS)


def dlq(topic: str) -> str:
    """Dead-letter topic of a topic: records that could not be parsed or validated."""
    return f"{topic}.dlq"


def all_topics_with_dlq() -> list[str]:
    return [t for topic in ALL_TOPICS for t in (topic, dlq(topic))]
