"""What the training service lets onto its dead-letter topic (pure)."""

from __future__ import annotations

from services.common.redact import NATIONAL_ID, placeholder, scrub_payload
from services.contracts.thai_calendar import is_valid_thai_national_id


def _learner_ref(value: object) -> object:
    # The contract refuses a learner_ref that is a national ID in any spacing; such a record is exactly what
    # lands on the DLQ, so the field is replaced whole (the generic redactor only knows the usual groupings).
    if isinstance(value, str) and is_valid_thai_national_id(value):
        return placeholder(NATIONAL_ID)
    return value


def scrub_dead_letter(value: bytes) -> bytes:
    """A training record's value as it may be dead-lettered: a learner_ref that is a national ID replaced, every
    other string (course_title, ...) redacted, birth-date-like fields dropped; never raises. Opaque pseudonyms are
    kept so the agency can replay the record."""
    return scrub_payload(value, rules={"learner_ref": _learner_ref})
