"""deploy/docker-compose.yml and deploy/Dockerfile checked statically (no Docker engine runs here)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from services.common.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
APP_SERVICES = ("roadmap", "training", "feedback", "notifier", "reports")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|KEYFILE|WEBHOOK_URLS", re.IGNORECASE)


def settings_env_names(cls) -> set[str]:
    """Every environment variable a pydantic-settings class reads: prefix + field name, and its aliases."""
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for name, field in cls.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        alias = field.validation_alias
        for choice in getattr(alias, "choices", [alias] if isinstance(alias, str) else []):
            if isinstance(choice, str):
                names.add(choice.upper())
    return names


def allowed_env(service: str) -> set[str]:
    if service == "simulator":
        from services.simulator import cli as sim_cli

        names = settings_env_names(ServiceSettings) | {f"NEWNORMAL_{n.upper()}_URL" for n in sim_cli.DEFAULT_URLS}
        source = (ROOT / "services" / "simulator" / "cli.py").read_text(encoding="utf-8")
        return names | set(re.findall(r"os\.environ\.get\(\"(NEWNORMAL_[A-Z_]+)\"", source))
    module = importlib.import_module(f"services.{service}.settings")
    return settings_env_names(getattr(module, f"{service.capitalize()}Settings"))


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_every_service_has_image_or_build_healthcheck_and_restart():
    expected = {"kafka", "mongodb", "prometheus", "alertmanager", "grafana", *APP_SERVICES, "simulator"}
    assert expected <= set(SERVICES)
    for name, svc in SERVICES.items():
        assert "image" in svc or "build" in svc, name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        if name != "simulator":
            assert svc.get("ports"), f"{name} exposes no port"
    for name in APP_SERVICES:
        svc = SERVICES[name]
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (DEPLOY / ".." / svc["build"]["dockerfile"]).resolve().exists()
        assert svc["command"] == ["run", name], "containers run `newnormal run <service>`"
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert svc["depends_on"]["mongodb"]["condition"] == "service_healthy"
    assert SERVICES["simulator"]["profiles"] == ["demo"], "the simulator is optional"


def test_ports_match_the_services_defaults():
    defaults = {"roadmap": 8101, "training": 8102, "feedback": 8103, "notifier": 8104, "reports": 8105}
    for name, port in defaults.items():
        env = env_of(SERVICES[name])
        assert env["NEWNORMAL_HTTP_PORT"] == str(port) and env["NEWNORMAL_HTTP_HOST"] == "0.0.0.0"
        assert any(str(p).endswith(f":{port}") for p in SERVICES[name]["ports"])
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in prom["scrape_configs"]}
    for name, port in defaults.items():
        assert targets[name] == [f"{name}:{port}"], "Prometheus scrapes the compose service names"


@pytest.mark.parametrize("service", [*APP_SERVICES, "simulator"])
def test_environment_variables_are_ones_the_services_read(service):
    allowed = allowed_env(service)
    names = set(env_of(SERVICES[service]))
    unknown = sorted(n for n in names if n.startswith("NEWNORMAL_") and n not in allowed)
    assert not unknown, f"{service} sets variables no settings class reads: {unknown}"
    assert {"NEWNORMAL_KAFKA_BOOTSTRAP_SERVERS", "NEWNORMAL_MONGO_URI", "NEWNORMAL_KAFKA_SECURITY_PROTOCOL"} <= names


def test_env_examples_name_real_settings():
    for path, service in ((DEPLOY / ".env.example", None), (DEPLOY / "notifier.env.example", "notifier")):
        names = set(re.findall(r"^#?\s*(NEWNORMAL_[A-Z_]+)=", path.read_text(encoding="utf-8"), re.MULTILINE))
        allowed = allowed_env(service) if service else set().union(*(allowed_env(s) for s in APP_SERVICES))
        assert names and names <= allowed, sorted(names - allowed)


def test_no_secret_is_committed():
    for name, svc in SERVICES.items():
        for key, value in env_of(svc).items():
            if key.endswith("_FILE") and SECRET_NAME.search(key.removesuffix("_FILE")):
                # A path to a mounted secret, not the secret itself.
                assert value.startswith("/run/secrets/"), f"{name}.{key} must name a mounted secret"
                continue
            if SECRET_NAME.search(key) or "MONGO_URI" in key:
                # Either comes from the environment (${VAR...}) or is empty.
                literal = re.sub(r"\$\{[^}]*\}", "", value)
                assert not re.search(r"(password|secret|token)\s*[:=]?\s*\w{6,}", literal, re.IGNORECASE), (name, key)
                assert "${" in value or value == "", f"{name}.{key} must come from the environment"
    uri = env_of(SERVICES["roadmap"])["NEWNORMAL_MONGO_URI"]
    assert "${MONGO_APP_PASSWORD" in uri and "replicaSet=rs0" in uri and "authSource=admin" in uri
    for example in (DEPLOY / ".env.example", DEPLOY / "notifier.env.example"):
        for line in example.read_text(encoding="utf-8").splitlines():
            key, _, value = line.lstrip("# ").partition("=")
            if SECRET_NAME.search(key) and not key.endswith("WEBHOOK_URLS"):
                assert value in ("", "CHANGE-ME"), f"{example.name}: {key} carries a value"
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored and "notifier.env" in ignored


def test_data_lives_in_volumes():
    volumes = set(COMPOSE["volumes"])
    mounts = {name: [str(v).split(":")[0] for v in svc.get("volumes", [])] for name, svc in SERVICES.items()}
    assert "kafka-data" in mounts["kafka"] and "mongo-data" in mounts["mongodb"]
    assert "prometheus-data" in mounts["prometheus"] and "grafana-data" in mounts["grafana"]
    assert {"kafka-data", "mongo-data", "prometheus-data", "grafana-data", "alertmanager-data"} <= volumes
    graf = " ".join(map(str, SERVICES["grafana"]["volumes"]))
    assert "./grafana/provisioning:/etc/grafana/provisioning" in graf and "./grafana/dashboards:" in graf
    for svc in SERVICES.values():
        for vol in svc.get("volumes", []):
            src = str(vol).split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"bind mount source missing: {src}"


def test_kafka_is_kraft_single_node_and_mongo_a_replica_set():
    kafka = env_of(SERVICES["kafka"])
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller" and "KAFKA_ZOOKEEPER_CONNECT" not in kafka
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    mongo = SERVICES["mongodb"]
    assert "--replSet" in mongo["command"] and "rs0" in mongo["command"] and "--auth" in mongo["command"]
    assert "rs.initiate" in " ".join(mongo["healthcheck"]["test"])


def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.MULTILINE)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    user = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert user and not user[-1].startswith(("root", "0")), "runs as a non-root user"
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert re.search(r'ENTRYPOINT \["newnormal"\]', runtime)
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert not re.search(r"(PASSWORD|SECRET|TOKEN)\s*=", text), "no secret baked into the image"
    # Everything the image copies exists.
    for src in re.findall(r"^COPY\s+(?!--from)(\S+)", text, re.MULTILINE):
        assert (ROOT / src).exists(), src


def test_alertmanager_and_notifier_share_the_receiver_credential_as_a_secret_file():
    """The receiver is always authenticated: Alertmanager reads the credential file, the notifier the same one."""
    am_config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    path = am_config["receivers"][0]["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"]
    secret = path.removeprefix("/run/secrets/")
    assert path.startswith("/run/secrets/") and secret in COMPOSE["secrets"]
    assert COMPOSE["secrets"][secret]["file"].startswith("${"), "the file's location comes from the environment"
    assert COMPOSE["secrets"][secret]["file"].endswith(f"./.secrets/{secret}}}")
    assert ".secrets/" in (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert secret in SERVICES["alertmanager"]["secrets"] and secret in SERVICES["notifier"]["secrets"]
    assert env_of(SERVICES["notifier"])["NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN_FILE"] == path
    assert "${NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET:?" in env_of(SERVICES["training"])["NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET"]
