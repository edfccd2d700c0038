"""The feedback service's redactor is the platform's one redactor (`services.common.redact`), re-exported
here so feedback code and its tests keep one import path."""

from services.common.redact import (
    BANK_ACCOUNT,
    EMAIL,
    KINDS,
    LINE_ID,
    NAME,
    NATIONAL_ID,
    PHONE,
    TRUNCATION_MARK,
    Redaction,
    count_placeholders,
    placeholder,
    redact,
    redact_to_limit,
)

__all__ = ["BANK_ACCOUNT", "EMAIL", "KINDS", "LINE_ID", "NAME", "NATIONAL_ID", "PHONE", "TRUNCATION_MARK", "Redaction",
           "count_placeholders", "placeholder", "redact", "redact_to_limit"]
