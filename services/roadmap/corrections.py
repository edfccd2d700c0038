"""Corrections as events (pure): a `roadmap.fact.retracted` fact makes the fact it names count as never sent.

Part of the "accepted facts" step of `domain.project()`. Decided from the stored facts alone, so the record is
the same whatever order the retraction and its target arrive in:

- a retraction whose target is not (yet) among the milestone's facts is kept and listed as `pending` (it may
  arrive first); it takes effect when the target arrives;
- a retraction applies only from the target's own agency namespace: its sender's agency is the target's agency,
  or it was sent with programme-office authority (the role of the key, never the agency code);
- a retraction of a retraction is refused (`cannot_retract_retraction`): a correction is undone by re-sending the
  fact under a new id, so the trail reads forward;
- several retractions of one fact remove it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.contracts.envelope import PROGRAMME_OFFICE_AUTHORITY, agency_source_prefix

RETRACTED = "retracted"  # the fact kind of a retraction
# Reason codes, the same in a dead letter (refused on arrival) and in a milestone's `ignored` list.
RETRACTION_OF_RETRACTION = "cannot_retract_retraction"
NOT_SAME_AGENCY = "retraction_not_same_agency"


def target_key(retraction: Mapping[str, Any]) -> str:
    data = retraction["data"]
    return f"{data['retracted_source']}|{data['retracted_id']}"


def refusal(retraction: Mapping[str, Any], target: Mapping[str, Any] | None) -> str | None:
    """Why this retraction may not apply to `target` (None while the target is unknown: only its namespace is
    checked then), or None when it applies."""
    if retraction.get("authority") == PROGRAMME_OFFICE_AUTHORITY:
        return RETRACTION_OF_RETRACTION if target is not None and target["kind"] == RETRACTED else None
    if not retraction["data"]["retracted_source"].startswith(agency_source_prefix(retraction["agency"])):
        return NOT_SAME_AGENCY  # the source namespace names the agency: decidable before the target arrives
    if target is None:
        return None
    if target["kind"] == RETRACTED:
        return RETRACTION_OF_RETRACTION
    return None if target["agency"] == retraction["agency"] else NOT_SAME_AGENCY


@dataclass(frozen=True)
class Corrected:
    facts: list[Mapping[str, Any]]  # the facts that count: no retraction, nothing retracted
    retractions: list[dict[str, Any]]  # every retraction with its effect (`applied` or `pending`), by key
    ignored: list[dict[str, Any]]  # retractions refused, with the reason
    count: int  # distinct facts, retractions and retracted ones included


def apply_retractions(facts: Iterable[Mapping[str, Any]]) -> Corrected:
    unique: dict[str, Mapping[str, Any]] = {}
    for fact in facts:
        unique.setdefault(fact["key"], fact)
    removed: set[str] = set()
    listing, ignored = [], []
    for key in sorted(k for k, f in unique.items() if f["kind"] == RETRACTED):
        retraction = unique[key]
        target = unique.get(target_key(retraction))
        reason = refusal(retraction, target)
        if reason is not None:
            ignored.append({"event": key, "kind": RETRACTED, "reason": reason})
            continue
        if target is not None:
            removed.add(target["key"])
        listing.append({"event": key, "retracts": target_key(retraction), "reason": retraction["data"].get("reason"),
                        "effect": "applied" if target is not None else "pending"})
    kept = [f for f in unique.values() if f["kind"] != RETRACTED and f["key"] not in removed]
    return Corrected(kept, listing, ignored, len(unique))
