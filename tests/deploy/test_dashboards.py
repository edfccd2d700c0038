"""Dashboards as code: the committed JSON is what the code generates, and it fits Grafana's dashboard model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from services.dashboards.generate import DASHBOARDS_DIR, MODULES, render_all, stale_files
from services.dashboards.panels import DATASOURCE_UID, FISCAL_YEAR_START_MONTH, TIMEZONE

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
BOARDS = render_all()
THAI = re.compile(r"[\u0E00-\u0E7F]")
PANEL_TYPES = {"row", "stat", "timeseries", "table", "bargauge", "piechart", "heatmap", "gauge", "text", "barchart"}
RECORDED = re.compile(r"\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b")


def panels_of(board: dict) -> list[dict]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_committed_json_is_what_the_code_generates():
    assert stale_files() == [], "run `python -m services.dashboards generate` and commit deploy/grafana/dashboards/"
    assert sorted(p.name for p in DASHBOARDS_DIR.glob("*.json")) == sorted(MODULES)


def test_stale_file_is_detected(tmp_path):
    for name, data in BOARDS.items():
        (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")  # same content, different formatting
    assert stale_files(tmp_path) == sorted(MODULES)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_fits_grafana_model(name):
    board = BOARDS[name]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["uid"] and len(board["uid"]) <= 40
    assert board["timezone"] == TIMEZONE == "Asia/Bangkok"
    assert board["fiscalYearStartMonth"] == FISCAL_YEAR_START_MONTH == 9  # October, 0-based
    assert board["time"]["from"].endswith("/fy") or board["time"]["from"].startswith("now-")
    assert THAI.search(board["title"]) and " · " in board["title"], "Thai first, then English"
    assert board["annotations"]["list"][0]["builtIn"] == 1

    panels = panels_of(board)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["w"] >= 1 and pos["h"] >= 1 and pos["x"] >= 0 and pos["y"] >= 0
        assert pos["x"] + pos["w"] <= 24, f"panel {panel['title']!r} wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panel {panel['id']} overlaps panel {cells[(x, y)]} in {name}"
                cells[(x, y)] = panel["id"]
        assert THAI.search(panel["title"]), f"panel title not in Thai: {panel['title']!r}"
        assert panel["type"] in PANEL_TYPES, panel["type"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["expr"].strip(), f"empty query in {panel['title']!r}"
            assert target["expr"].count("(") == target["expr"].count(")")

    variables = board.get("templating", {}).get("list", [])
    names = [v["name"] for v in variables]
    assert len(names) == len(set(names))
    used = " ".join(t["expr"] + " " + p["title"] for p in panels if p["type"] != "row" for t in p["targets"])
    for var in variables:
        assert f"${var['name']}" in used, f"variable {var['name']} of {name} is never used"
        assert var["datasource"]["uid"] == DATASOURCE_UID
    for ref in set(re.findall(r"\$(\w+)", used)) - {"__range", "__rate_interval", "__interval"}:
        assert ref in names, f"{name} uses ${ref} but defines no such variable"


def test_template_variables_where_they_apply():
    by_uid = {b["uid"]: {v["name"] for v in b.get("templating", {}).get("list", [])} for b in BOARDS.values()}
    assert {"fiscal_year"} <= by_uid["newnormal-overview"]
    assert {"workstream"} <= by_uid["newnormal-roadmap"]
    assert {"fiscal_year", "agency", "competency"} <= by_uid["newnormal-personnel"]
    assert {"age_group", "channel"} <= by_uid["newnormal-citizen"]
    assert {"job"} <= by_uid["newnormal-pipeline"]


def test_recorded_series_used_by_dashboards_are_recorded():
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/recording.yml").read_text(encoding="utf-8"))
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"]}
    used = {m for b in BOARDS.values() for p in panels_of(b) for t in p.get("targets", [])
            for m in RECORDED.findall(t["expr"])}
    assert used and used <= recorded, f"not recorded: {used - recorded}"


def test_provisioning_points_at_the_same_datasource_and_folder():
    ds = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    (source,) = ds["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"].startswith("${"), "URL comes from the environment"
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "newnormal.yml").read_text(encoding="utf-8"))["providers"]
    assert providers[0]["folderUid"] == "newnormal" and providers[0]["type"] == "file"
    from services.dashboards.push import datasource_definition

    pushed = datasource_definition("http://prometheus:9090")
    assert pushed["uid"] == source["uid"] and pushed["name"] == source["name"] and pushed["jsonData"] == source["jsonData"]
