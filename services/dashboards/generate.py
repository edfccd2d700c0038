"""Render every dashboard to Grafana JSON; write them under deploy/grafana/dashboards/ or compare."""

from __future__ import annotations

from pathlib import Path

from services.dashboards import citizen, overview, personnel, pipeline, roadmap
from services.dashboards.panels import dumps, render

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"
RULES_DIR = DEPLOY / "prometheus" / "rules"
PROMETHEUS_RULE = DEPLOY / "kubernetes" / "prometheus-rules.yaml"
# file name -> module with build(); the numbers order them in Grafana's folder view.
MODULES = {
    "01-programme-overview.json": overview,
    "02-roadmap.json": roadmap,
    "03-personnel-readiness.json": personnel,
    "04-citizen-experience.json": citizen,
    "05-pipeline-health.json": pipeline,
}


def render_all() -> dict[str, dict]:
    return {name: render(module.build()) for name, module in MODULES.items()}


def write_all(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in render_all().items():
        path = directory / name
        path.write_text(dumps(data), encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """Names of committed dashboards that differ from what the code generates (or are missing / extra)."""
    expected = {name: dumps(data) for name, data in render_all().items()}
    stale = [name for name, text in expected.items()
             if not (directory / name).exists() or (directory / name).read_text(encoding="utf-8") != text]
    stale += [p.name for p in directory.glob("*.json") if p.name not in expected]
    return sorted(stale)


def prometheus_rule_text(rules_dir: Path = RULES_DIR) -> str:
    """deploy/prometheus/rules/*.yml wrapped in a Prometheus Operator PrometheusRule for Kubernetes."""
    import yaml

    groups = [g for path in sorted(rules_dir.glob("*.yml"))
              for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "newnormal", "namespace": "newnormal",
                        "labels": {"app.kubernetes.io/part-of": "newnormal", "release": "prometheus"}},
           "spec": {"groups": groups}}
    header = ("# Generated from deploy/prometheus/rules/*.yml by `python -m services.dashboards generate`;\n"
              "# edit the rule files, not this one (tests/deploy/test_kubernetes.py compares them).\n")
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=130)


def write_prometheus_rule(path: Path = PROMETHEUS_RULE) -> Path:
    path.write_text(prometheus_rule_text(), encoding="utf-8")
    return path
