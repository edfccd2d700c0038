"""Registry of Thai central-government agencies (ministries and departments).

The data lives in ``data/agencies.json`` so that non-developers can review the
Thai names; this module validates it once at load time so a typo in the data
file fails fast at start-up instead of surfacing as a bad label in a report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "KINDS",
    "PROGRAMME_OFFICE",
    "Agency",
    "AgencyDataError",
    "AgencyRegistry",
    "get_registry",
    "load_registry",
]

# The Office of the Public Sector Development Commission (สำนักงาน ก.พ.ร.)
# drives the New Normal public-sector programme, so it is the programme office:
# roll-ups, escalations and programme-wide reports are addressed to it.
PROGRAMME_OFFICE = "opdc"

KINDS = frozenset({"ministry", "department"})

# Codes end up in URLs, metric labels and database keys, so keep them to a
# short, lowercase ASCII slug that never needs escaping.
_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
# Any character from the Thai Unicode block; used to catch swapped name fields.
_THAI_RE = re.compile(r"[\u0E00-\u0E7F]")

_DATA_FILE = Path(__file__).parent / "data" / "agencies.json"


class AgencyDataError(ValueError):
    """The agency data is inconsistent (duplicate code, dangling ministry, ...)."""


@dataclass(frozen=True)
class Agency:
    code: str
    name_th: str
    name_en: str
    ministry: str
    kind: str

    @property
    def is_ministry(self) -> bool:
        return self.kind == "ministry"

    @property
    def label(self) -> str:
        return f"{self.name_th} ({self.name_en})"


class AgencyRegistry:
    """Immutable, validated collection of agencies keyed by code."""

    __slots__ = ("_by_code", "_departments", "_ministries", "_sorted")

    def __init__(self, agencies: Iterable[Agency]) -> None:
        by_code: dict[str, Agency] = {}
        for agency in agencies:
            _check_agency_fields(agency)
            if agency.code in by_code:
                raise AgencyDataError(f"duplicate agency code {agency.code!r}")
            by_code[agency.code] = agency

        # Ministry references are checked only after every entry is known, so
        # the data file does not need to list ministries first.
        departments: dict[str, list[Agency]] = {}
        for agency in by_code.values():
            parent = by_code.get(agency.ministry)
            if agency.kind == "ministry":
                if agency.ministry != agency.code:
                    raise AgencyDataError(f"ministry {agency.code!r} must reference itself, not {agency.ministry!r}")
                departments.setdefault(agency.code, [])
            elif parent is None:
                raise AgencyDataError(f"agency {agency.code!r} references unknown ministry {agency.ministry!r}")
            elif parent.kind != "ministry":
                raise AgencyDataError(
                    f"agency {agency.code!r} references {agency.ministry!r}, which is a {parent.kind}, not a ministry"
                )
            else:
                departments.setdefault(agency.ministry, []).append(agency)

        self._by_code: Mapping[str, Agency] = by_code
        self._sorted: tuple[Agency, ...] = tuple(sorted(by_code.values(), key=_code_key))
        self._ministries: tuple[Agency, ...] = tuple(a for a in self._sorted if a.is_ministry)
        self._departments: dict[str, tuple[Agency, ...]] = {
            m: tuple(sorted(deps, key=_code_key)) for m, deps in departments.items()
        }

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> AgencyRegistry:
        """Build from raw JSON-like records, rejecting missing or unknown keys."""
        return cls(_record_to_agency(i, r) for i, r in enumerate(records))

    def get(self, code: str) -> Agency | None:
        return self._by_code.get(code)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self._by_code

    def __len__(self) -> int:
        return len(self._by_code)

    def __iter__(self) -> Iterator[Agency]:
        return iter(self._sorted)

    def codes(self) -> frozenset[str]:
        return frozenset(self._by_code)

    def all(self) -> list[Agency]:
        """Every agency, sorted by code (a fresh list the caller may mutate)."""
        return list(self._sorted)

    def ministries(self) -> list[Agency]:
        """Ministry-level entries (including the Office of the Prime Minister), by code."""
        return list(self._ministries)

    def departments_of(self, ministry_code: str) -> list[Agency]:
        """Departments under a ministry, sorted by code.

        Raises KeyError for anything that is not a ministry code: silently
        returning ``[]`` for a typo would hide the bug behind an empty report.
        """
        try:
            return list(self._departments[ministry_code])
        except KeyError:
            raise KeyError(f"unknown ministry code {ministry_code!r}") from None

    def label(self, code: str) -> str:
        """Human label ``"ชื่อไทย (English name)"``; KeyError for unknown codes."""
        agency = self._by_code.get(code)
        if agency is None:
            raise KeyError(f"unknown agency code {code!r}")
        return agency.label


def _code_key(agency: Agency) -> str:
    return agency.code


_FIELDS = ("code", "name_th", "name_en", "ministry", "kind")


def _record_to_agency(index: int, record: Mapping[str, Any]) -> Agency:
    if not isinstance(record, Mapping):
        raise AgencyDataError(f"agency record #{index} is not an object")
    missing = [f for f in _FIELDS if f not in record]
    extra = sorted(set(record) - set(_FIELDS))
    if missing or extra:
        raise AgencyDataError(
            f"agency record #{index} ({record.get('code')!r}): missing fields {missing}, unexpected fields {extra}"
        )
    return Agency(**{f: record[f] for f in _FIELDS})


def _check_agency_fields(agency: Agency) -> None:
    for field in _FIELDS:
        value = getattr(agency, field)
        if not isinstance(value, str) or not value.strip():
            raise AgencyDataError(f"agency {agency.code!r}: {field} must be a non-empty string")
    if not _CODE_RE.fullmatch(agency.code):
        raise AgencyDataError(f"agency code {agency.code!r} does not match {_CODE_RE.pattern}")
    if not _CODE_RE.fullmatch(agency.ministry):
        raise AgencyDataError(f"agency {agency.code!r}: ministry {agency.ministry!r} does not match {_CODE_RE.pattern}")
    if agency.kind not in KINDS:
        raise AgencyDataError(f"agency {agency.code!r}: kind {agency.kind!r} not in {sorted(KINDS)}")
    if not _THAI_RE.search(agency.name_th):
        raise AgencyDataError(f"agency {agency.code!r}: name_th has no Thai characters")
    if _THAI_RE.search(agency.name_en):
        raise AgencyDataError(f"agency {agency.code!r}: name_en contains Thai characters")


def load_registry(path: Path | str | None = None) -> AgencyRegistry:
    """Parse and validate an agencies JSON file (default: the bundled one).

    Not cached; use :func:`get_registry` for the shared instance.
    """
    file = Path(path) if path is not None else _DATA_FILE
    with file.open(encoding="utf-8") as fh:
        doc = json.load(fh)
    records = doc.get("agencies") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise AgencyDataError(f"{file}: expected an object with an 'agencies' list")
    return AgencyRegistry.from_records(records)


@lru_cache(maxsize=1)
def get_registry() -> AgencyRegistry:
    """The bundled registry, parsed once per process."""
    registry = load_registry()
    # The programme office is hard-wired into routing; a data edit that drops
    # it must fail at start-up, not when the first escalation is sent.
    if PROGRAMME_OFFICE not in registry:
        raise AgencyDataError(f"programme office {PROGRAMME_OFFICE!r} missing from agency data")
    return registry
