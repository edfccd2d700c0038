"""The benchmarks start the services with the environment `bench.platform_stack.Stack.env` makes; benchmarks are not
run in CI, so this holds that environment to what the services refuse to start without (no secret has a default in
code): a secret added to a service and not to the benchmarks fails here, not in the next person's benchmark run."""

from __future__ import annotations

import pytest

from bench.platform_stack import Stack
from services.notifier.settings import NotifierSettings
from services.training.settings import TrainingSettings


@pytest.fixture
def bench_environment(monkeypatch):
    for name in ("NEWNORMAL_NOTIFIER_ACK_SECRET", "NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN",
                 "NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET"):
        monkeypatch.delenv(name, raising=False)  # the test session's own secrets (conftest) do not count
    for name, value in Stack().env("bench").items():
        monkeypatch.setenv(name, value)


def test_the_benchmark_environment_holds_every_secret_a_service_needs_to_start(bench_environment):
    notifier = NotifierSettings()
    assert notifier.ack_secrets() and notifier.alertmanager_credential()
    assert TrainingSettings().learner_secret()

