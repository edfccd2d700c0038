"""`newnormal up` gives the reports service and the notifier (which attaches the quarterly PDF it fetches from the
reports service) each its own programme-office key: 0600 files in .data/, fresh on each start, the previous key of
the same label revoked and the other label's left alone."""

from __future__ import annotations

import stat

import pytest
from pymongo import AsyncMongoClient

from services.common.auth import hash_key
from services.localstack import NOTIFIER_REPORTS_KEY_LABEL, REPORTS_KEY_LABEL, _write_reports_key

pytestmark = pytest.mark.integration


async def test_reports_and_notifier_keys_are_separate_and_fresh_on_each_start(mongo_uri, db_name, tmp_path):
    reports = await _write_reports_key(mongo_uri, db_name, tmp_path / "reports-api-key")
    first = await _write_reports_key(mongo_uri, db_name, tmp_path / "notifier-reports-api-key", NOTIFIER_REPORTS_KEY_LABEL)
    second = await _write_reports_key(mongo_uri, db_name, tmp_path / "notifier-reports-api-key", NOTIFIER_REPORTS_KEY_LABEL)
    assert len({reports, first, second}) == 3
    path = tmp_path / "notifier-reports-api-key"
    assert path.read_text(encoding="utf-8") == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    client = AsyncMongoClient(mongo_uri)
    try:
        docs = {d["_id"]: d async for d in client[db_name].api_keys.find({})}
    finally:
        await client.close()
    assert docs[hash_key(first)]["revoked"] is True
    assert docs[hash_key(second)]["revoked"] is False and docs[hash_key(second)]["label"] == NOTIFIER_REPORTS_KEY_LABEL
    assert docs[hash_key(reports)]["revoked"] is False and docs[hash_key(reports)]["label"] == REPORTS_KEY_LABEL
    assert {d["role"] for d in docs.values()} == {"programme_office"}
