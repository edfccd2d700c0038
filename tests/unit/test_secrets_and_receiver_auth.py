"""Secrets without defaults and the Alertmanager receiver's credential check, without servers."""

from __future__ import annotations

import base64
import stat

import pytest
from pydantic import SecretStr

from services.common.settings import SecretMissing, require_secret
from services.localstack import _write_alertmanager_config, local_secret
from services.notifier.entrypoints import credential_matches
from services.notifier.settings import NotifierSettings
from services.training.settings import TrainingSettings

SECRET = "receiver-credential-0123456789"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("header", [f"Bearer {SECRET}", f"bearer {SECRET}", f"  Bearer   {SECRET}  ",
                                    basic("alertmanager", SECRET), basic("alertmanager", SECRET).lower()[:6]
                                    + basic("alertmanager", SECRET)[6:]])
def test_right_credentials_match(header):
    assert credential_matches(header, "alertmanager", SECRET)


@pytest.mark.parametrize("header", [
    "", "Bearer", f"Bearer {SECRET[:-1]}", f"Bearer {SECRET}0", f"Bearer {SECRET.upper()}", f"Token {SECRET}",
    f"{SECRET}", basic("root", SECRET), basic("alertmanager", SECRET[:-1]), basic("alertmanager", ""),
    basic("", SECRET), basic(f"alertmanager:{SECRET}", ""), "Basic", "Basic %%%", "Basic " + base64.b64encode(
        SECRET.encode()).decode(), "Basic " + base64.b64encode(b"alertmanager:\xff\xfe").decode(),
    f"Bearer {SECRET}\x00", "Bearer " + "x" * 100_000,
])
def test_wrong_credentials_do_not_match(header):
    assert not credential_matches(header, "alertmanager", SECRET)


def test_require_secret_names_the_variable_and_refuses_weak_values():
    with pytest.raises(SecretMissing, match="NEWNORMAL_X is not set"):
        require_secret(None, "NEWNORMAL_X", "x")
    with pytest.raises(SecretMissing, match="NEWNORMAL_X is not set"):
        require_secret(SecretStr("   \n"), "NEWNORMAL_X", "x")
    with pytest.raises(SecretMissing, match="shorter than 16") as err:
        require_secret(SecretStr("CHANGE-ME"), "NEWNORMAL_X", "x")
    assert "CHANGE-ME" not in str(err.value), "the message never repeats the value"
    assert require_secret(SecretStr(f" {SECRET}\n"), "NEWNORMAL_X", "x") == SECRET


def test_no_secret_has_a_default(monkeypatch):
    monkeypatch.delenv("NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET", raising=False)
    monkeypatch.delenv("NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN", raising=False)
    monkeypatch.delenv("NEWNORMAL_NOTIFIER_ACK_SECRET", raising=False)
    with pytest.raises(SecretMissing, match="NEWNORMAL_NOTIFIER_ACK_SECRET"):
        NotifierSettings().ack_secrets()
    monkeypatch.setenv("NEWNORMAL_NOTIFIER_ACK_SECRET", "x" * 31)
    with pytest.raises(SecretMissing, match="at least 32"):
        NotifierSettings().ack_secrets()
    monkeypatch.setenv("NEWNORMAL_NOTIFIER_ACK_SECRET", f"{'a' * 32} {'b' * 40}")
    assert NotifierSettings().ack_secrets() == ("a" * 32, "b" * 40)
    with pytest.raises(SecretMissing, match="NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET"):
        TrainingSettings().learner_secret()
    with pytest.raises(SecretMissing, match="NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN"):
        NotifierSettings().alertmanager_credential()
    for cls in (TrainingSettings, NotifierSettings):
        for name, field in cls.model_fields.items():
            if field.annotation is not None and "SecretStr" in str(field.annotation):
                assert field.default is None or field.default_factory is dict or name == "mongo_uri", name


def test_alertmanager_credential_from_the_environment_or_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN", SECRET)
    assert NotifierSettings().alertmanager_credential() == SECRET
    monkeypatch.delenv("NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN")
    path = tmp_path / "token"
    path.write_text(SECRET + "\n", encoding="utf-8")
    monkeypatch.setenv("NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN_FILE", str(path))
    assert NotifierSettings().alertmanager_credential() == SECRET
    path.write_text("short", encoding="utf-8")
    with pytest.raises(SecretMissing, match="_TOKEN_FILE is shorter"):
        NotifierSettings().alertmanager_credential()


def test_local_secret_is_generated_once_private_and_reused(tmp_path):
    path = tmp_path / "learner-hmac-secret"
    first = local_secret(path)
    assert len(first) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # loosened by someone: tightened again on the next start, value unchanged
    assert local_secret(path) == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_secret(tmp_path / "other") != first
    path.write_text("", encoding="utf-8")
    with pytest.raises(RuntimeError, match="is empty"):
        local_secret(path)


def test_up_writes_the_credential_file_into_its_alertmanager_config(tmp_path):
    import yaml

    cred = tmp_path / "alertmanager-notifier-token"
    config = _write_alertmanager_config(tmp_path / "am.yml", {"notifier": 18104}, cred)
    (receiver,) = yaml.safe_load(config.read_text(encoding="utf-8"))["receivers"]
    hook = receiver["webhook_configs"][0]
    assert hook["url"] == "http://127.0.0.1:18104/v1/alertmanager"
    assert hook["http_config"]["authorization"]["credentials_file"] == str(cred)
