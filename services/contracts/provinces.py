"""The 77 Thai provinces (76 changwat + Bangkok), keyed by ISO 3166-2:TH code.

ISO codes are used instead of Thai names because names have several accepted
romanisations (Chonburi / Chon Buri) while the ISO code is unambiguous.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "PROVINCE_CODES",
    "REGIONS",
    "Province",
    "ProvinceDataError",
    "get_provinces",
    "is_province",
    "provinces_in_region",
]

# Six-region geographic scheme (National Geographical Committee).
REGIONS = frozenset({"north", "northeast", "central", "east", "west", "south"})
EXPECTED_COUNT = 77

# Only the two-digit numeric codes are provinces; TH-S (Pattaya) is a special
# administrative city and deliberately not accepted.
_CODE_RE = re.compile(r"^TH-[1-9][0-9]$")
_DATA_FILE = Path(__file__).parent / "data" / "provinces.json"
_FIELDS = ("code", "name_th", "name_en", "region")


class ProvinceDataError(ValueError):
    """The bundled province data is inconsistent."""


@dataclass(frozen=True)
class Province:
    code: str
    name_th: str
    name_en: str
    region: str


@lru_cache(maxsize=1)
def _load() -> tuple[Province, ...]:
    with _DATA_FILE.open(encoding="utf-8") as fh:
        doc = json.load(fh)
    records = doc.get("provinces") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise ProvinceDataError(f"{_DATA_FILE}: expected an object with a 'provinces' list")

    provinces: list[Province] = []
    seen: set[str] = set()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or set(rec) != set(_FIELDS):
            raise ProvinceDataError(f"province record #{i} must have exactly {_FIELDS}")
        if not all(isinstance(rec[f], str) and rec[f].strip() for f in _FIELDS):
            raise ProvinceDataError(f"province record #{i}: all fields must be non-empty strings")
        prov = Province(**{f: rec[f] for f in _FIELDS})
        if not _CODE_RE.fullmatch(prov.code):
            raise ProvinceDataError(f"province code {prov.code!r} is not an ISO 3166-2:TH code")
        if prov.code in seen:
            raise ProvinceDataError(f"duplicate province code {prov.code!r}")
        if prov.region not in REGIONS:
            raise ProvinceDataError(f"{prov.code}: unknown region {prov.region!r}")
        seen.add(prov.code)
        provinces.append(prov)

    # A missing or extra row would silently skew per-province coverage stats.
    if len(provinces) != EXPECTED_COUNT:
        raise ProvinceDataError(f"expected {EXPECTED_COUNT} provinces, found {len(provinces)}")
    return tuple(sorted(provinces, key=lambda p: p.code))


def get_provinces() -> dict[str, Province]:
    """All provinces by ISO code, in code order.

    The parsed data is cached; a new dict is returned each call so callers
    cannot corrupt the shared copy by mutating it.
    """
    return {p.code: p for p in _load()}


def provinces_in_region(region: str) -> list[Province]:
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {sorted(REGIONS)}")
    return [p for p in _load() if p.region == region]


PROVINCE_CODES: frozenset[str] = frozenset(p.code for p in _load())


def is_province(code: object) -> bool:
    """Exact ISO code match ("TH-10"); no case folding, so stored keys stay canonical."""
    return isinstance(code, str) and code in PROVINCE_CODES
