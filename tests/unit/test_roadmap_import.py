"""Programme plan import: CSV and YAML, Buddhist-era dates, Thai digits, bad rows with line numbers."""

from __future__ import annotations

import json

from services.roadmap import cli
from services.roadmap.importer import parse_file, parse_text

CSV = """milestone_id,title_th,title_en,workstream,owner_agency,due_date,weight,depends_on
M-01,จัดทำแผน,Plan,roadmap_governance,opdc,30/09/2569,2,
M-02,ระบบดิจิทัล,,technology_access,dga,๓๑/๑๒/๒๕๖๘,๓,M-01;M-03
M-03,ผิดพลาด,,no_such_workstream,dga,2026-01-01,1,
M-04,วันที่ผิด,,technology_access,dga,31/02/2569,1,
M-05,,,technology_access,dga,2026-05-01,1,
M-01,ซ้ำ,,roadmap_governance,opdc,2026-01-01,1,
M-06,หน่วยงานผิด,,technology_access,nope,2026-01-01,1,
"""

YAML = """milestones:
  - milestone_id: Y-1
    title_th: อบรมบุคลากร
    workstream: personnel_readiness
    owner_agency: ocsc
    due_date: "30 ก.ย. 2569"
    depends_on: [M-01]
  - milestone_id: Y-2
    title_en: Awareness campaign
    workstream: public_awareness
    agency: prd
    due_date: 2026-08-31
    weight: "๒"
  - milestone_id: Y-3
    title_th: ไม่มีกำหนด
    workstream: public_awareness
    owner_agency: prd
"""


def test_csv_converts_be_dates_and_thai_digits_and_reports_bad_rows():
    plan = parse_text(CSV, "csv")
    events = {e.data.milestone_id: (line, e) for line, e in plan.events}
    assert sorted(events) == ["M-01", "M-02"]
    line, m1 = events["M-01"]
    assert line == 2 and m1.data.due_date.isoformat() == "2026-09-30" and m1.agency == "opdc"
    m2 = events["M-02"][1]
    assert m2.data.due_date.isoformat() == "2025-12-31" and m2.data.weight == 3
    assert m2.data.depends_on == ["M-01", "M-03"]
    assert m2.source == "/agencies/dga/roadmap-import" and m2.id.startswith("plan:M-02:")
    errors = {e.line: e for e in plan.errors}
    assert sorted(errors) == [4, 5, 6, 7, 8]
    assert errors[4].reason == "invalid_data" and "workstream" in errors[4].detail
    assert errors[5].reason == "invalid_row"  # 31 February
    assert errors[6].reason == "invalid_data" and "title" in errors[6].detail
    assert errors[7].reason == "duplicate_milestone" and "line 2" in errors[7].detail
    assert errors[8].reason == "unknown_agency"


def test_yaml_with_line_numbers_and_aliases():
    plan = parse_text(YAML, "yaml")
    assert [(line, e.data.milestone_id) for line, e in plan.events] == [(2, "Y-1"), (8, "Y-2")]
    y1, y2 = plan.events[0][1], plan.events[1][1]
    assert y1.data.due_date.isoformat() == "2026-09-30" and y1.data.depends_on == ["M-01"]
    assert y2.agency == "prd" and y2.data.weight == 2
    assert [(e.line, e.reason) for e in plan.errors] == [(14, "invalid_row")]


def test_event_ids_are_deterministic_so_reimport_is_idempotent():
    first = [e.id for _, e in parse_text(CSV, "csv").events]
    assert first == [e.id for _, e in parse_text(CSV, "csv").events]
    changed = CSV.replace("30/09/2569", "31/10/2569")
    assert next(e.id for _, e in parse_text(changed, "csv").events) != first[0]


def test_unreadable_file_is_one_error():
    plan = parse_text("milestones: [unclosed", "yaml")
    assert not plan.events and plan.errors[0].reason == "unreadable_file"


def test_cli_dry_run_reports_and_exit_code(tmp_path, capsys):
    path = tmp_path / "plan.csv"
    path.write_text(CSV, encoding="utf-8")
    assert parse_file(path).events
    code = cli.cmd_import(_args(file=str(path), dry_run=True, json=True))
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["rows_valid"] == 2 and len(report["errors"]) == 5
    good = tmp_path / "good.yaml"
    good.write_text(YAML.rsplit("  - milestone_id: Y-3", 1)[0], encoding="utf-8")
    assert cli.cmd_import(_args(file=str(good), dry_run=True, json=False)) == 0


def _args(**kw):
    import argparse

    base = {"source_prefix": "roadmap-import", "url": "http://127.0.0.1:1", "key": None, "kafka": False,
            "dry_run": False, "json": False}
    base.update(kw)
    return argparse.Namespace(**base)
