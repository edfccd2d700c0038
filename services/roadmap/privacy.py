"""What the roadmap keeps of what agencies write freely (pure): personal data redacted before anything is stored or
published, as the feedback service does for citizens' comments. A milestone's title, description, progress note,
evidence or reason is shown on the public overview, in the quarterly report to Cabinet and in e-mail subjects: a
phone number, national ID or e-mail address typed there must never reach them."""

from __future__ import annotations

import dataclasses

from pydantic import ValidationError

from services.common.redact import redacted_fields, text_limits
from services.contracts import problems
from services.contracts.envelope import Event, EventError
from services.contracts.roadmap import (
    FactRetracted,
    MilestoneAcknowledged,
    MilestoneCancelled,
    MilestoneCompleted,
    MilestonePlanned,
    MilestoneProgressed,
    MilestoneRescheduled,
)

# Per event model, the fields people write freely, with the contract's limit (names and ids are not free text).
FREE_TEXT = {model: text_limits(model, names) for model, names in (
    (MilestonePlanned, ("title_th", "title_en", "description")),
    (MilestoneProgressed, ("note",)),
    (MilestoneCompleted, ("evidence",)),
    (MilestoneRescheduled, ("reason",)),
    (MilestoneCancelled, ("reason",)),
    (FactRetracted, ("reason",)),
    (MilestoneAcknowledged, ("note",)),
)}


def prepare(event: Event) -> Event:
    """The event with personal data in its free text redacted (cut to the field's limit with a marker if redaction
    made it longer): the consumer's `prepare` and the intake's, before anything is stored or published. Pure and
    idempotent; an event without personal data comes back as it is."""
    limits = FREE_TEXT.get(type(event.data))
    update = redacted_fields(event.data, limits) if limits else {}
    if not update:
        return event
    try:
        data = type(event.data).model_validate(event.data.model_copy(update=update).model_dump(mode="json"))
    except ValidationError as exc:  # never echo the input: the fields only
        fields = ", ".join(e["field"] for e in problems.describe(exc.errors()[:5]))
        raise EventError("invalid_data", f"invalid after redaction: {fields}", event_id=event.id,
                         source=event.source) from None
    return dataclasses.replace(event, data=data)
