"""deploy/kubernetes/ checked statically: every service has its objects, probes, resources, non-root
security context, lag-based autoscaling, and secrets only through Secret references."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from services.contracts import topics

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
SERVICES = {"roadmap": (8101, topics.ROADMAP_EVENTS), "training": (8102, topics.TRAINING_EVENTS),
            "feedback": (8103, topics.FEEDBACK_EVENTS), "notifier": (8104, topics.ROADMAP_ALERTS),
            "reports": (8105, None)}  # reports consumes no topic: no lag-driven ScaledObject
KINDS = {"Deployment", "Service", "ServiceMonitor", "PodDisruptionBudget", "ScaledObject"}


def load(name: str) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), f"duplicate kinds in {name}"
    return by_kind


def all_docs() -> list[dict]:
    return [d for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d]


def test_every_document_is_well_formed_and_namespaced():
    docs = all_docs()
    assert docs
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), d
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"]["name"])
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "newnormal"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_objects(name):
    port, topic = SERVICES[name]
    objs = load(f"{name}.yaml")
    assert set(objs) == (KINDS if topic else KINDS - {"ScaledObject"})
    dep, svc, mon, pdb, scaled = (objs.get(k) for k in ("Deployment", "Service", "ServiceMonitor", "PodDisruptionBudget",
                                                         "ScaledObject"))
    selector = dep["spec"]["selector"]["matchLabels"]
    pod = dep["spec"]["template"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["selector"] == selector and pdb["spec"]["selector"]["matchLabels"] == selector
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert mon["spec"]["jobLabel"] == "app.kubernetes.io/name" and svc["metadata"]["labels"]["app.kubernetes.io/name"] == name
    assert mon["spec"]["endpoints"][0]["path"] == "/metrics" and mon["spec"]["endpoints"][0]["port"] == "http"
    assert svc["spec"]["ports"][0]["port"] == port and svc["spec"]["ports"][0]["name"] == "http"

    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    (container,) = spec["containers"]
    assert container["args"] == ["run", name]
    assert container["ports"][0]["containerPort"] == port
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    res = container["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["NEWNORMAL_HTTP_PORT"]["value"] == str(port)
    for secret_var in ("NEWNORMAL_MONGO_URI", "NEWNORMAL_KAFKA_SASL_PASSWORD", "NEWNORMAL_KAFKA_SASL_USERNAME"):
        assert "secretKeyRef" in env[secret_var]["valueFrom"], f"{secret_var} must come from a Secret"
    assert env["NEWNORMAL_KAFKA_SASL_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == f"newnormal-kafka-{name}", \
        "one Kafka principal per service"

    assert pdb["spec"]["minAvailable"] >= 1
    if topic is None:
        assert dep["spec"]["replicas"] > pdb["spec"]["minAvailable"] - 1
        return
    assert scaled["spec"]["minReplicaCount"] > pdb["spec"]["minAvailable"] - 1
    assert scaled["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka" and trigger["metadata"]["topic"] == topic
    assert trigger["metadata"]["consumerGroup"] == f"newnormal.{name}"  # ServiceSettings.consumer_group(<service>)
    assert int(trigger["metadata"]["lagThreshold"]) > 0 and trigger["authenticationRef"]["name"]
    config = next(d for d in all_docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "newnormal-config")
    assert scaled["spec"]["maxReplicaCount"] <= int(config["data"]["NEWNORMAL_KAFKA_TOPIC_PARTITIONS"]), \
        "more consumers than partitions would sit idle"


def test_production_security_is_configuration():
    config = next(d for d in all_docs() if d["kind"] == "ConfigMap")["data"]
    assert config["NEWNORMAL_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["NEWNORMAL_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["NEWNORMAL_KAFKA_SSL_CAFILE"].startswith("/etc/newnormal/kafka-ca/")
    from services.common.settings import ServiceSettings

    fields = {f"NEWNORMAL_{n}".upper() for n in ServiceSettings.model_fields}
    assert set(config) <= fields, sorted(set(config) - fields)
    secretish = re.compile(r"(?i)password|token|secret|_key$|mongo_uri")
    for name in config:
        assert not secretish.search(name), f"{name} belongs in a Secret, not the ConfigMap"

    def walk(node):
        if isinstance(node, dict):
            if "name" in node and ("value" in node or "valueFrom" in node) and secretish.search(str(node["name"])):
                assert "value" not in node and "secretKeyRef" in node["valueFrom"], f"{node['name']} must be a secretKeyRef"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for d in all_docs():
        assert d["kind"] != "Secret", "Secrets are created from a vault, never committed"
        walk(d)


def test_readme_covers_national_scale():
    text = (K8S / "README.md").read_text(encoding="utf-8")
    for needle in ("Partitions", "Replicas", "MongoDB", "300", "millions", "KEDA"):
        assert needle in text


def test_prometheus_rule_matches_the_rule_files():
    from services.dashboards.generate import PROMETHEUS_RULE, prometheus_rule_text

    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == prometheus_rule_text(), \
        "run `python -m services.dashboards generate` after editing deploy/prometheus/rules/"
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    names = {r.get("alert") or r.get("record") for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"ServiceDown", "MilestoneMissed", "newnormal:fiscal_year_elapsed:ratio"} <= names


def test_required_secrets_come_from_secrets_and_alertmanager_authenticates():
    notifier = load("notifier.yaml")["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    training = load("training.yaml")["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    token = {e["name"]: e for e in notifier["env"]}["NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN"]["valueFrom"]["secretKeyRef"]
    learner = {e["name"]: e for e in training["env"]}["NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET"]["valueFrom"]["secretKeyRef"]
    assert not token.get("optional") and not learner.get("optional"), "the services refuse to start without them"
    (am,) = [d for d in all_docs() if d["kind"] == "AlertmanagerConfig"]
    (receiver,) = am["spec"]["receivers"]
    (hook,) = receiver["webhookConfigs"]
    assert hook["url"] == "http://notifier.newnormal.svc:8104/v1/alertmanager" and hook["sendResolved"] is True
    credentials = hook["httpConfig"]["authorization"]["credentials"]
    assert credentials == {"name": token["name"], "key": token["key"]}, "Alertmanager and notifier share one Secret"
    assert am["spec"]["route"]["receiver"] == receiver["name"]
