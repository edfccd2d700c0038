"""One formatter of validation errors for every answer that leaves the platform (HTTP problems, dead letters).

Pydantic's own messages quote library internals and sometimes the offending input (which may be personal
data); callers get our sentences instead: where the problem is, a stable reason code, and what is expected.
Messages of our own validators (`ValueError` raised in the contracts' models) are kept: we wrote them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

MAX_ERRORS = 20
_MAX_DETAIL = 300

# What a pattern asks for, in words: a regex is no answer for a person (and a pattern that spells out every space
# character would print them raw). Filled by `worded`, where each pattern is defined.
_PATTERN_WORDS: dict[str, str] = {}


def worded(pattern: str, words: str) -> str:
    """`pattern`, registered with the sentence a refusal gives for it ("must be ...")."""
    _PATTERN_WORDS[pattern] = words
    return pattern


def _pattern_message(pattern: str) -> str:
    if pattern in _PATTERN_WORDS:
        return _PATTERN_WORDS[pattern]
    # A pattern nobody worded: shown with anything unprintable escaped, bounded.
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in pattern)
    return f"must match the pattern {shown[:200]}"


_EXPECTED: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not an accepted field",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "int_parsing_size": "is too large an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_unicode": "must be valid UTF-8 text",
    "string_sub_type": "must be a string",
    "bytes_type": "must be text",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
    "set_type": "must be an array",
    "none_required": "must be null",
    "date_type": "must be a date YYYY-MM-DD",
    "date_parsing": "must be a date YYYY-MM-DD",
    "date_from_datetime_parsing": "must be a date YYYY-MM-DD",
    "date_from_datetime_inexact": "must be a date without a time of day",
    "datetime_type": "must be an RFC 3339 date-time",
    "datetime_parsing": "must be an RFC 3339 date-time",
    "datetime_from_date_parsing": "must be an RFC 3339 date-time",
    "datetime_object_invalid": "must be an RFC 3339 date-time",
    "timezone_aware": "must carry a time-zone offset",
    "time_type": "must be a time of day",
    "time_parsing": "must be a time of day",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
    "url_type": "must be a URL",
    "url_parsing": "must be a URL",
    "json_invalid": "is not valid JSON",
    "json_type": "must be JSON",
    "recursion_loop": "nests too deep",
}

_BOUNDS: dict[str, tuple[str, str]] = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "multiple_of": ("multiple_of", "must be a multiple of {}"),
    "string_too_short": ("min_length", "must be at least {} characters long"),
    "string_too_long": ("max_length", "must be at most {} characters long"),
    "too_short": ("min_length", "must have at least {} items"),
    "too_long": ("max_length", "must have at most {} items"),
    "enum": ("expected", "must be one of {}"),
    "literal_error": ("expected", "must be one of {}"),
}


def _field(loc: Iterable[Any], part: Callable[[str], str] = str, empty: str = "body") -> str:
    return ".".join(part(str(p)) for p in loc) or empty


def _message(err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "string_pattern_mismatch":
        return _pattern_message(str(ctx.get("pattern", "")))
    if kind in _BOUNDS:
        name, text = _BOUNDS[kind]
        if name in ctx:
            return text.format(str(ctx[name])[:200])
    if kind in ("unknown_agency", "buddhist_era_date", "date_out_of_range"):  # our own error types (common_types,
        # dates): their text names no input but the year, and the year is what the hint is about
        return str(err.get("msg") or "is not a registered agency code")[:_MAX_DETAIL]
    if kind in ("value_error", "assertion_error") and isinstance(ctx.get("error"), ValueError | AssertionError):
        # Raised by the contracts' own validators: our sentence, kept (bounded).
        return str(ctx["error"])[:_MAX_DETAIL] or "is not valid"
    return f"is not valid ({kind or 'invalid'})"


def describe(errors: Iterable[Mapping[str, Any]], *, strip: int = 0, part: Callable[[str], str] = str,
             empty: str = "body") -> list[dict[str, str]]:
    """`[{"field", "reason", "detail"}]` for a pydantic error list; `strip` drops leading loc parts
    (e.g. the "body" FastAPI prefixes); `part` rewrites each path part (a key the client invented may need
    redacting before it reaches a log); `empty` names the root. The offending input is never echoed."""
    out = []
    for err in errors:
        if len(out) == MAX_ERRORS:
            break
        loc = list(err.get("loc", ()))[strip:]
        out.append({"field": _field(loc, part, empty), "reason": str(err.get("type") or "invalid"), "detail": _message(err)})
    return out


def summary(described: list[dict[str, str]], limit: int = 10) -> str:
    """One line for a problem's `detail`: "field: message; ..." """
    text = "; ".join(f"{e['field']}: {e['detail']}" for e in described[:limit])
    if len(described) > limit:
        text += f"; and {len(described) - limit} more"
    return text or "the request is not valid"


def explain(errors: Iterable[Mapping[str, Any]], *, limit: int = 10, **options: Any) -> str:
    """`summary(describe(errors, **options), limit)`: the one-line detail of a rejected input."""
    return summary(describe(errors, **options), limit)
