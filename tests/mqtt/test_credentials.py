"""Credentials come from the environment or a private secrets file, never anything else."""

from __future__ import annotations

import pytest

from edge_service.errors import ConfigError
from edge_service.mqtt.credentials import load_credentials


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in ("DGS_MQTT_USERNAME", "DGS_MQTT_PASSWORD", "DGS_MQTT_SECRETS_FILE"):
        monkeypatch.delenv(k, raising=False)


def test_anonymous_when_nothing_is_configured():
    assert load_credentials() is None


def test_environment_wins(monkeypatch, tmp_path):
    f = tmp_path / "s"
    f.write_text("fileuser\nfilepw\n")
    f.chmod(0o600)
    monkeypatch.setenv("DGS_MQTT_USERNAME", "envuser")
    monkeypatch.setenv("DGS_MQTT_PASSWORD", "envpw")
    assert load_credentials(f) == ("envuser", "envpw")


def test_secrets_file_via_env_var(monkeypatch, tmp_path):
    f = tmp_path / "s"
    f.write_text("dgs-01\npass word with spaces\n")
    f.chmod(0o600)
    monkeypatch.setenv("DGS_MQTT_SECRETS_FILE", str(f))
    assert load_credentials() == ("dgs-01", "pass word with spaces")


def test_readable_secrets_file_is_refused(tmp_path):
    f = tmp_path / "s"
    f.write_text("u\np\n")
    f.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_credentials(f)


def test_missing_or_empty_secrets_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_credentials(tmp_path / "nope")
    f = tmp_path / "empty"
    f.write_text("")
    f.chmod(0o600)
    with pytest.raises(ConfigError, match="username"):
        load_credentials(f)


def test_missing_tls_files_are_a_broker_error_naming_the_problem(tmp_path):
    from edge_service.errors import BrokerError
    from edge_service.mqtt import MqttSettings, Publisher, TlsSettings

    s = MqttSettings(url="mqtts://127.0.0.1:8883", tls=TlsSettings(ca_file=tmp_path / "no-ca.pem"))
    with pytest.raises(BrokerError, match="TLS"):
        Publisher(s, tmp_path / "ob.sqlite")
