"""Fault injection with exact counting, at CI size: one consuming service (feedback, or the one in
NEWNORMAL_FAULTS_SERVICE) on its own Tansu and its own on-disk SecantusDB, killed three times while consuming, a 20 s
database outage, a broker freeze, poison records throughout (`fault_scenario.py` says how). Nothing lost, nothing
stored twice, every bad record dead-lettered with its reason, metrics equal to the database. Figures go to
bench/results/faults.json. All three services at once at full size: `make faults-full` (`full.py`, on demand).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from fault_scenario import DB_OUTAGE_SECONDS, POISON_KINDS, Plan, Scenario

pytestmark = pytest.mark.integration

SERVICE = os.environ.get("NEWNORMAL_FAULTS_SERVICE", "feedback")
KILLS = 3


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    scenario = Scenario(tmp_path_factory.mktemp("faults"), Plan(services=(SERVICE,), kills=KILLS))
    try:
        run = asyncio.run(scenario.run())
    finally:
        scenario.stop_all()
    # One lane: its figures at the top level, as this file has always written them.
    figures = {"service": SERVICE, **run["lanes"][SERVICE], "recovery": {**run["recovery"], **run["lanes"][SERVICE]["recovery"]},
               "wall_seconds": run["wall_seconds"]}
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.harness import write_results

    # CI's run (feedback) is bench/results/faults.json; another service's (NEWNORMAL_FAULTS_SERVICE) faults_<service>.
    write_results("faults" if SERVICE == "feedback" else f"faults_{SERVICE}",
                  {"note": "timings depend on the machine's load at the time; the counts do not", **figures})
    return figures


def test_every_accepted_event_is_stored_exactly_once(results):
    assert results["events_accepted"] > 2000
    assert results["accepted_not_stored"] == 0
    assert results["stored_not_accepted"] == 0
    assert results["duplicates_in_db"] == 0
    assert results["stored"] == results["stored_documents"]
    if results["rollups_verify"] is not None:
        assert results["rollups_verify"]["returncode"] == 0, results["rollups_verify"]


def test_every_fault_happened_and_was_recovered_from(results):
    rec = results["recovery"]
    assert len(rec["consumer_kill"]) == KILLS
    assert rec["database_outage_s"] >= DB_OUTAGE_SECONDS
    assert results["http_503_by_reason"].get("broker_unavailable", 0) >= 1
    assert results["http_503_with_retry_after"] == results["http_503_responses"]
    assert rec["broker_thaw_to_http_accepted_s"] >= 0
    assert results["http_oversized"] == (413, "event_too_large")


def test_every_poison_record_is_dead_lettered_with_its_reason(results):
    dead = results["dead_letters"]
    assert dead["missing"] == []
    assert dead["wrong_reason"] == []
    assert dead["unexpected"] == 0
    assert set(dead["by_reason"]) == set(POISON_KINDS)


def test_metrics_agree_with_the_database(results):
    final = results["final_tranche"]
    deltas = final["metric_deltas"]
    assert final["db_gained"] == final["valid_new"]
    assert deltas.get("dead_lettered", 0) == final["poison"]
    assert final["dead_letter_reason_deltas"] == {k: 2 for k in POISON_KINDS}
    # Every valid record is counted once, as stored or as duplicate.
    assert deltas.get("stored", 0) + deltas.get("duplicate", 0) == final["valid_new"] + final["resent_old"]
    assert deltas.get("stored", 0) == final["db_gained"]
