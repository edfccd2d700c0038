"""The MongoDB store of the write path (`services.common.ledger.LedgerStore`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import bulk_write_or_duplicates, find_in, insert_if_new, insert_new

_BUILDING = "__rebuild"  # suffix of the collection a book is rebuilt in before it replaces the live one


def _pauses(journal: str) -> str:
    return f"{journal}_pause"


class MongoLedgerStore:
    def __init__(self, db: AsyncDatabase):
        self.db = db

    async def open_entry(self, journal: str, entry: dict[str, Any]) -> datetime | None:
        await insert_if_new(self.db[journal], entry)  # False: an earlier attempt's insert landed
        return await self.pause_until(journal)  # after the insert: see LedgerStore.open_entry

    async def pause_until(self, journal: str) -> datetime | None:
        state = await self.db[_pauses(journal)].find_one({"_id": journal})
        return state.get("until") if state else None

    async def set_pause(self, journal: str, until: datetime | None) -> None:
        if until is None:
            await self.db[_pauses(journal)].delete_one({"_id": journal})
        else:
            await self.db[_pauses(journal)].replace_one({"_id": journal}, {"_id": journal, "until": until}, upsert=True)

    async def close_entry(self, journal: str, token: str) -> None:
        await self.db[journal].delete_one({"_id": token})

    async def open_entries(self, journal: str, older_than: datetime, limit: int) -> list[dict[str, Any]]:
        # The journal holds only the writes in flight (a handful of documents): no index needed.
        cursor = self.db[journal].find({"at": {"$lte": older_than}}).sort("at", ASCENDING).limit(limit)
        return await cursor.to_list(None)

    async def open_tokens(self, journal: str) -> set[str]:
        return {d["_id"] async for d in self.db[journal].find({}, {"_id": 1})}

    async def insert_new(self, collection: str, docs: Sequence[dict[str, Any]]) -> list[int]:
        return await insert_new(self.db[collection], docs)

    async def carrying(self, collection: str, ids: Sequence[Any], field: str, token: str) -> list[dict[str, Any]]:
        return [d for d in await find_in(self.db[collection], "_id", ids) if d.get(field) == token]

    async def read(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in await find_in(self.db[collection], "_id", ids)}

    async def write_revisions(self, collection: str, docs: Sequence[tuple[int | None, dict[str, Any]]]) -> list[int]:
        ops: list[InsertOne | ReplaceOne] = []
        for expected, doc in docs:
            if expected is None:
                ops.append(InsertOne(doc))
            else:  # revision 0 also matches a document written before revisions were kept (no `rev`: null)
                rev = {"$in": [0, None]} if expected == 0 else expected
                # Upsert: a replace that lost its race (another revision stored) then fails as a duplicate `_id`
                # at its own position, so the answer names exactly the writes that landed.
                ops.append(ReplaceOne({"_id": doc["_id"], "rev": rev}, doc, upsert=True))
        _, lost = await bulk_write_or_duplicates(self.db[collection], ops)
        return [i for i in range(len(docs)) if i not in lost]

    async def find(self, collection: str, query: Mapping[str, Any], batch_size: int,
                   projection: Mapping[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        return self.db[collection].find(dict(query), dict(projection) if projection else None, batch_size=batch_size)

    async def clear_entries(self, journal: str) -> None:
        await self.db[journal].delete_many({})

    async def replace_all(self, collection: str, docs: Sequence[dict[str, Any]]) -> None:
        """Build the new documents in a collection of their own, with the live one's indexes, then rename it over
        the live one (atomic: readers see the old book or the new one)."""
        coll, building = self.db[collection], self.db[f"{collection}{_BUILDING}"]
        await building.drop()  # what a rebuild that died half-way left
        for start in range(0, len(docs), 5000):
            await building.insert_many(docs[start:start + 5000], ordered=False)
        if not docs:
            await self.db.create_collection(building.name)
        async for index in await coll.list_indexes():
            if index["name"] != "_id_":
                options = {k: v for k, v in index.items() if k not in ("key", "v", "ns")}
                await building.create_index(list(index["key"].items()), **options)
        await building.rename(collection, dropTarget=True)

    async def patch(self, collection: str, docs: Sequence[dict[str, Any]], removed: Sequence[Any]) -> None:
        ops: list[ReplaceOne | DeleteOne] = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs]
        ops += [DeleteOne({"_id": doc_id}) for doc_id in removed]
        for start in range(0, len(ops), 5000):
            await self.db[collection].bulk_write(ops[start:start + 5000], ordered=False)
