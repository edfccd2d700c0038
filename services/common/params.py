"""Query and path parameter types every service shares, strict as their documentation says.

Pydantic's lax mode takes `?due_before=0` as 1970-01-01 and `?before=0.5` as a Unix time: a client's mistake
would then be answered with data instead of a 400. These types accept exactly what the OpenAPI document
promises (ISO 8601 text), and agency filters are documented as the registry's codes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Container
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BeforeValidator, WithJsonSchema

from services.contracts.common_types import AgencyCode, AwareDatetime
from services.contracts.dates import BE_FIRST_YEAR, gregorian_year


def repeated_parameter(query_params: Any, single: Container[str] | None = None) -> str | None:
    """The first name (sorted) given more than once among those taking one value (`single`; all when None): a
    route reading it would take one value, a proxy, a cache or an audit log perhaps another."""
    given = Counter(name for name, _ in query_params.multi_items())
    repeated = sorted(name for name, count in given.items() if count > 1 and (single is None or name in single))
    return repeated[0] if repeated else None


# Years 1900 to LAST_YEAR (2399) are accepted: a filter before them is a mistake, and BE_FIRST_YEAR on is the wire's
# one year rule (a Buddhist-era year, refused with its conversion; 2800 on, out of range). The documents publish what
# is accepted (in ASCII digits); years up to 2999 are read, so that a Buddhist-era year gets its own reason rather
# than "not a date".
_DAY, _TIME = r"-\d{2}-\d{2}", r"[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})"
LAST_YEAR = BE_FIRST_YEAR - 1
_YEARS_2000_ON = "2[0-3][0-9]{2}"  # 2000 to LAST_YEAR, as a pattern: checked against BE_FIRST_YEAR below
if not (re.fullmatch(_YEARS_2000_ON, str(LAST_YEAR)) and not re.fullmatch(_YEARS_2000_ON, str(BE_FIRST_YEAR))):
    raise RuntimeError(f"the published year pattern must end at {LAST_YEAR}")
ACCEPTED_YEAR = f"(19[0-9]{{2}}|{_YEARS_2000_ON})"
ANY_YEAR_TO_LAST = f"([01][0-9]{{3}}|{_YEARS_2000_ON})"  # years before 1900 too (xAPI's instants)
DATE_PATTERN = f"^{ACCEPTED_YEAR}{_DAY}$"
DATETIME_PATTERN = f"^{ACCEPTED_YEAR}{_DAY}{_TIME}$"
_DATE = re.compile(rf"^(19|2\d)\d{{2}}{_DAY}$")
_DATETIME = re.compile(rf"^(19|2\d)\d{{2}}{_DAY}{_TIME}$")


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError(f"must be a date YYYY-MM-DD between 1900 and {LAST_YEAR}")
    gregorian_year(int(value[:4]))
    return value  # pydantic parses it, and refuses impossible days (2026-02-30) in the same words


def _iso_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATETIME.match(value):
        raise ValueError(f"must be an RFC 3339 date-time between 1900 and {LAST_YEAR}, "
                         "e.g. 2026-05-01T09:00:00+07:00")
    gregorian_year(int(value[:4]))
    return value


WHOLE_NUMBER = re.compile(r"-?[0-9]{1,12}")  # an integer as a query writes it: ASCII digits


def _whole_number(value: Any) -> Any:
    # int("1_000"), int(" 5") and int("+5") are 1000, 5 and 5: a query says a number one way, in ASCII digits
    if isinstance(value, str) and not WHOLE_NUMBER.fullmatch(value):
        raise ValueError("must be an integer (ASCII digits)")
    return value


# An integer query parameter: `Annotated[int, Query(ge=..., le=...), ASCII_INTEGER] = default`. The order matters to
# FastAPI: with the validator before the Query(), the document publishes `ge`/`le` instead of minimum/maximum; with
# a Query() as the default value, the validator is dropped.
ASCII_INTEGER = BeforeValidator(_whole_number)

IsoDate = Annotated[date, BeforeValidator(_iso_date),
                    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN})]
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime),
                        WithJsonSchema({"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN})]


def agency_code_schema() -> dict[str, Any]:
    from services.contracts.agencies import get_registry

    return {"type": "string", "enum": sorted(a.code for a in get_registry().all()),
            "description": "agency code from the registry (GET /v1/agencies)"}


# An optional agency filter: an unknown code is the client's mistake, answered 400 like any invalid parameter.
AgencyFilter = Annotated[AgencyCode | None, Query(description="agency code from the registry (GET /v1/agencies)")]
