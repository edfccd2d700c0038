"""Prometheus and Alertmanager configuration checked by their own tools, and alert rules unit-tested."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from services.common import processes as px

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
AM = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
ALERTS = [r for g in yaml.safe_load((PROM / "rules" / "alerts.yml").read_text(encoding="utf-8"))["groups"]
          for r in g["rules"]]


def run(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_promtool_checks_config_and_rules():
    out = run("promtool", "check", "config", "prometheus.yml", cwd=PROM)
    assert "SUCCESS" in out and "2 rule files found" in out
    for rules in sorted((PROM / "rules").glob("*.yml")):
        assert "SUCCESS" in run("promtool", "check", "rules", str(rules))


def test_promtool_unit_tests_cover_every_alert():
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    out = run("promtool", "test", "rules", *[t.name for t in tests], cwd=PROM / "tests")
    assert "SUCCESS" in out
    tested = set()
    for t in tests:
        for case in yaml.safe_load(t.read_text(encoding="utf-8"))["tests"]:
            for art in case.get("alert_rule_test", []):
                if art.get("exp_alerts"):
                    tested.add(art["alertname"])
    assert tested == {r["alert"] for r in ALERTS}, "every alert needs a unit test that sees it fire"


def test_promtool_unit_test_can_fail(tmp_path):
    """The rule tests are not vacuous: a wrong expectation makes promtool fail."""
    case = {"rule_files": [str(PROM / "rules" / "recording.yml"), str(PROM / "rules" / "alerts.yml")],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": [
                {"series": 'newnormal_roadmap_milestones{workstream="regulation_reform",status="missed"}', "values": "0x20"}],
                "alert_rule_test": [{"eval_time": "10m", "alertname": "MilestoneMissed",
                                     "exp_alerts": [{"exp_labels": {"workstream": "regulation_reform"}}]}]}]}
    path = tmp_path / "wrong_test.yml"
    path.write_text(yaml.safe_dump(case), encoding="utf-8")
    proc = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0


def test_alerts_are_labelled_and_have_runbooks():
    text = RUNBOOKS.read_text(encoding="utf-8")
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', text))
    names = [r["alert"] for r in ALERTS]
    assert len(names) == len(set(names))
    for rule in ALERTS:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), "alert names are CamelCase"
        labels, ann = rule["labels"], rule["annotations"]
        assert labels["severity"] in {"critical", "warning"} and labels["category"] in {"programme", "operational"}
        assert "service" in labels or "service" in rule["expr"], f"{rule['alert']} cannot be inhibited per service"
        assert re.search(r"[\u0E00-\u0E7F]", ann["summary"]) and " · " in ann["summary"], "Thai + English summary"
        url = ann["runbook_url"]
        assert url.startswith("docs/runbooks.md#") and url.split("#")[1] in anchors, f"missing runbook {url}"
    required = {"MilestoneMissed", "MilestoneAtRisk", "ReadinessBehindLinearPath", "CitizenSatisfactionLow",
                "OlderCitizensTechDifficultyGap", "ConsumerLagHigh", "DeadLetterRecords", "NotifierDeliveryFailures",
                "ServiceDown"}
    assert required <= set(names)


def test_amtool_checks_alertmanager_config_and_routes():
    assert "SUCCESS" in run("amtool", "check-config", str(AM))
    config = yaml.safe_load(AM.read_text(encoding="utf-8"))
    (receiver,) = config["receivers"]
    assert receiver["webhook_configs"][0]["url"] == "http://notifier:8104/v1/alertmanager"
    assert receiver["webhook_configs"][0]["send_resolved"] is True
    # Always authenticated, from a file (services/localstack.py rewrites the path to .data/ verbatim).
    from services.localstack import DEPLOY_AM_CREDENTIAL_FILE

    auth = receiver["webhook_configs"][0]["http_config"]["authorization"]
    assert auth == {"type": "Bearer", "credentials_file": DEPLOY_AM_CREDENTIAL_FILE}
    assert "credentials" not in auth, "never an inline credential"
    assert receiver["webhook_configs"][0]["max_alerts"] <= 500, "below the notifier's default alert cap"
    out = run("amtool", "config", "routes", "test", f"--config.file={AM}", "--verify.receivers=notifier",
              "alertname=ServiceDown", "category=operational", "service=roadmap")
    assert "notifier" in out
    # The local stack's rewrite target is present verbatim (services/localstack.py).
    assert "http://notifier:8104" in AM.read_text(encoding="utf-8")


def _api(url: str, body: object | None = None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read()
        return json.loads(text) if text else None


def test_service_down_inhibits_alerts_derived_from_that_service(tmp_path):
    """Real Alertmanager with the committed config: ServiceDown{service=roadmap} inhibits roadmap's alerts only."""
    port = px.free_port()
    config = tmp_path / "alertmanager.yml"
    # No notifier listens here: delivery fails, which does not affect inhibition.
    config.write_text(AM.read_text(encoding="utf-8").replace("http://notifier:8104", f"http://127.0.0.1:{px.free_port()}"),
                      encoding="utf-8")
    proc = px.alertmanager(port, config, tmp_path / "data", tmp_path / "logs").start()
    try:
        px.wait_until(lambda: px.http_ok(f"http://127.0.0.1:{port}/-/ready"), 30, "alertmanager", proc=proc)
        now = datetime.now(UTC)
        ends = (now + timedelta(hours=1)).isoformat()

        def alert(name: str, **labels: str) -> dict:
            return {"labels": {"alertname": name, **labels}, "startsAt": now.isoformat(), "endsAt": ends,
                    "annotations": {"summary": name}}

        _api(f"http://127.0.0.1:{port}/api/v2/alerts", [
            alert("ServiceDown", service="roadmap", category="operational", severity="critical"),
            alert("MilestoneMissed", service="roadmap", workstream="regulation_reform", category="programme",
                  severity="critical"),
            alert("CitizenSatisfactionLow", service="feedback", age_group="60_plus", category="programme",
                  severity="warning"),
        ])

        def states() -> dict[str, dict]:
            return {a["labels"]["alertname"]: a["status"] for a in _api(f"http://127.0.0.1:{port}/api/v2/alerts")}

        px.wait_until(lambda: len(got := states()) == 3 and got["MilestoneMissed"]["state"] == "suppressed", 20,
                      "the inhibition to apply", interval=0.2)
        got = states()
        assert got["MilestoneMissed"]["inhibitedBy"], got
        assert got["ServiceDown"]["state"] == "active"
        assert got["CitizenSatisfactionLow"]["state"] == "active"
    finally:
        proc.stop()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
