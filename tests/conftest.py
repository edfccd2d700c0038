"""Fixtures: real servers as child processes, started once and polled until ready.

- `mongo_uri` (session): one SecantusDB; every test gets its own database through `settings_for`.
- `kafka_bootstrap` (module): a fresh Tansu broker per test module, so topics start empty and
  consumers do not replay other modules' events.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.common import processes as px

LOGS = Path(__file__).resolve().parent.parent / ".data" / "test-logs"
# Secrets have no defaults in code: every test, and every service process a test starts (they inherit the
# environment), gets throw-away ones. Tests of the refusal to start remove them with monkeypatch.
TEST_SECRETS = {"NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET": "test-learner-hmac-secret-not-for-production",
                "NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN": "test-alertmanager-token-not-for-production",
                "NEWNORMAL_NOTIFIER_ACK_SECRET": "test-acknowledge-link-secret-not-for-production"}


@pytest.fixture(scope="session", autouse=True)
def service_secrets():
    with pytest.MonkeyPatch.context() as mp:
        for name, value in TEST_SECRETS.items():
            mp.setenv(name, value)
        yield TEST_SECRETS


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory):
    port = px.free_port()
    storage = tmp_path_factory.mktemp("secantus")
    proc = px.secantus(port, str(storage), LOGS).start()
    uri = f"mongodb://127.0.0.1:{port}"
    try:
        px.wait_until(lambda: px.mongo_ready(uri), 60, "secantusdb", proc=proc)
        yield {"uri": uri, "port": port, "proc": proc, "storage": str(storage)}
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def mongo_uri(mongo_server) -> str:
    return mongo_server["uri"]


@pytest.fixture(scope="module")
def kafka_server():
    port = px.free_port()
    proc = px.tansu(port, LOGS).start()
    try:
        px.wait_until(lambda: px.port_open(port), 30, "tansu", proc=proc)
        yield {"bootstrap": f"127.0.0.1:{port}", "port": port, "proc": proc}
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def kafka_bootstrap(kafka_server) -> str:
    return kafka_server["bootstrap"]


@pytest.fixture
def db_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings_for(kafka_bootstrap, mongo_uri, db_name):
    """Build a service's settings pointed at the test servers: `settings_for(RoadmapSettings, **overrides)`."""

    group_prefix = f"test-{uuid.uuid4().hex[:8]}"

    def build(cls, **overrides):
        values = dict(
            kafka_bootstrap_servers=kafka_bootstrap, mongo_uri=mongo_uri, mongo_db=db_name,
            kafka_consumer_group_prefix=group_prefix, kafka_session_timeout_ms=6000,
            kafka_heartbeat_interval_ms=500, kafka_topic_partitions=2, http_port=px.free_port(),
            metrics_cache_seconds=0, api_key_cache_seconds=0,
        )
        values.update(overrides)
        return cls(**values)

    return build
