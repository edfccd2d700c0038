"""Service layer of the agencies' contacts: read, replace (audited, compare-and-set), resolve for routing."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from services.common.auth import Principal
from services.common.clock import Clock
from services.notifier import contacts
from services.notifier.adapters import NotificationRepository
from services.notifier.domain import OWNER_CONTACTS, OWNER_ESCALATION_CONTACTS, Channel, RoutingTable, Target

log = logging.getLogger(__name__)


class ContactsConflict(RuntimeError):
    """Another writer kept changing the contacts: the caller should send them again."""


class ContactBook:
    def __init__(self, repo: NotificationRepository, routing: RoutingTable, clock: Clock):
        self.repo = repo
        self.routing = routing
        self.clock = clock

    async def read(self, agency: str, reader: Principal) -> dict[str, Any]:
        reader.read_scope(agency)  # 403 for another agency or a survey key
        doc = await self.repo.contacts_doc(agency)
        return {"agency": agency, "workstreams": doc["workstreams"] if doc else {},
                "version": doc["version"] if doc else 0,
                "updated_at": doc["updated_at"].isoformat() if doc else None,
                "history": [{**h, "at": h["at"].isoformat()} for h in await self.repo.contacts_history(agency)]}

    async def replace(self, agency: str, body: contacts.AgencyContacts, writer: Principal) -> dict[str, Any]:
        writer.read_scope(agency, "change")  # the agency itself or the programme office, nobody else
        workstreams = body.model_dump(mode="json", exclude_none=True)["workstreams"]
        for _ in range(5):
            current = await self.repo.contacts_doc(agency)
            version = current["version"] if current else 0
            now = self.clock()
            audit = contacts.audit_record(agency, version + 1, now, writer.key_id, writer.role.value,
                                          current["workstreams"] if current else None, workstreams)
            if await self.repo.replace_contacts(agency, workstreams, version, now, audit):
                # Who and what changed, never the addresses.
                log.info("contacts replaced", extra={"agency": agency, "version": version + 1,
                                                     "changed_workstreams": audit["changed_workstreams"],
                                                     "key_id": writer.key_id})
                return await self.read(agency, writer)
        raise ContactsConflict(agency)

    # --- routing ---------------------------------------------------------------------------
    async def preload(self, agencies: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The registered contacts of these agencies (empty when no route names contacts: no query)."""
        if not self.routing.uses_contacts:
            return {}
        return await self.repo.contacts_of(agencies)


def resolve(routing: RoutingTable, recipients: Iterable[str], channels: Iterable[Channel], *, agency: str | None,
            workstream: str | None, registered: dict[str, dict[str, Any]]) -> list[tuple[Target, str]]:
    """(target, display name) for a route's recipients: named people from the routes file, and the owner agency's
    registered contacts where the route says `owner_contacts` / `owner_escalation_contacts`."""
    channels = tuple(channels)
    names = list(recipients)
    out = [(t, routing.display_name(t.recipient))
           for t in routing.targets([n for n in names if n not in contacts.WHICH], channels)]
    for dynamic in (OWNER_CONTACTS, OWNER_ESCALATION_CONTACTS):
        if dynamic in names and agency:
            out.extend(contacts.contact_targets(registered.get(agency), agency, workstream, contacts.WHICH[dynamic],
                                                channels))
    return out
