"""`dgs-edge run --validate-config` makes every check `run` makes (issue 12): each config of
the issue that used to say "config OK" and then could not run is refused with one line per
problem naming the key; `run` refuses the same configs with one line, never a traceback."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_service.cli.edge import main
from edge_service.config import load_config
from edge_service.errors import ConfigError
from edge_service.preflight import check_directory, preflight

DGS_EDGE = [sys.executable, "-m", "edge_service.cli.edge"]


@pytest.fixture(autouse=True)
def _no_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("DGS_MQTT_USERNAME", "DGS_MQTT_PASSWORD", "DGS_MQTT_SECRETS_FILE"):
        monkeypatch.delenv(k, raising=False)


def _base(tmp: Path) -> dict[str, str]:
    return {
        "session": f'recordings_dir = "{tmp / "rec"}"\nstate_dir = "{tmp / "state"}"\n',
        "mqtt": 'url = "mqtt://127.0.0.1:1883"\n',
    }


def _write(tmp: Path, sections: dict[str, str]) -> Path:
    p = tmp / "dgs.toml"
    p.write_text("".join(f"[{k}]\n{v}" for k, v in sections.items()))
    return p


def _secret(tmp: Path, data: bytes | None, mode: int = 0o600, name: str = "mqtt.secret") -> Path:
    f = tmp / name
    if data is None:
        f.mkdir()
    else:
        f.write_bytes(data)
        f.chmod(mode)
    return f


def _readonly_dir(tmp: Path) -> Iterator[Path]:
    """A directory nobody can write into - not even root (an immutable directory when
    permission bits do not bind, as for root)."""
    d = tmp / "ro"
    d.mkdir()
    d.chmod(0o500)
    immutable = False
    if check_directory(d) is None:  # root ignores permission bits
        res = subprocess.run(["chattr", "+i", str(d)], capture_output=True, text=True)
        immutable = res.returncode == 0
        if not immutable:
            pytest.fail(f"cannot make a read-only directory here: {res.stderr.strip()}")
    try:
        yield d
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(d)], check=True)
        d.chmod(0o700)


Case = Callable[[Path, dict[str, str]], str]


def _mqtt(extra: str) -> Case:
    def edit(tmp: Path, s: dict[str, str]) -> str:
        s["mqtt"] += extra.replace("TMP", str(tmp))
        return "mqtt."

    return edit


def secrets_missing(tmp: Path, s: dict[str, str]) -> str:
    s["mqtt"] += f'secrets_file = "{tmp / "nope"}"\n'
    return "mqtt.secrets_file: cannot read"


def secrets_0644(tmp: Path, s: dict[str, str]) -> str:
    f = _secret(tmp, b"u\np\n", 0o644)
    s["mqtt"] += f'secrets_file = "{f}"\n'
    return "chmod 600"


def secrets_empty(tmp: Path, s: dict[str, str]) -> str:
    s["mqtt"] += f'secrets_file = "{_secret(tmp, b"")}"\n'
    return "username line"


def secrets_directory(tmp: Path, s: dict[str, str]) -> str:
    s["mqtt"] += f'secrets_file = "{_secret(tmp, None)}"\n'
    return "not a regular file"


def secrets_binary(tmp: Path, s: dict[str, str]) -> str:
    s["mqtt"] += f'secrets_file = "{_secret(tmp, bytes(range(256)))}"\n'
    return "mqtt.secrets_file: MQTT secrets file"


def ca_missing(tmp: Path, s: dict[str, str]) -> str:
    s["mqtt.tls"] = f'ca_file = "{tmp / "no-ca.pem"}"\n'
    return "mqtt.tls.ca_file:"


def ca_garbage(tmp: Path, s: dict[str, str]) -> str:
    (tmp / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    s["mqtt.tls"] = f'ca_file = "{tmp / "ca.pem"}"\n'
    return "mqtt.tls.ca_file:"


def cert_garbage(tmp: Path, s: dict[str, str]) -> str:
    (tmp / "c.pem").write_text("not a certificate\n")
    s["mqtt.tls"] = f'cert_file = "{tmp / "c.pem"}"\n'
    return "mqtt.tls.cert_file:"


def model_missing(tmp: Path, s: dict[str, str]) -> str:
    s["detector"] = f'model_path = "{tmp / "none.onnx"}"\n'
    return "detector.model_path: model file not found"


def model_garbage(tmp: Path, s: dict[str, str]) -> str:
    (tmp / "bad.onnx").write_bytes(b"\x08\x07garbage" * 100)
    s["detector"] = f'model_path = "{tmp / "bad.onnx"}"\n'
    return "detector.model_path:"


def port_99999(tmp: Path, s: dict[str, str]) -> str:
    s["mqtt"] = 'url = "mqtt://127.0.0.1:99999"\n'
    return "mqtt.url"


def port_abc(tmp: Path, s: dict[str, str]) -> str:
    s["mqtt"] = 'url = "mqtt://127.0.0.1:abc"\n'
    return "mqtt.url"


def dir_under_file(tmp: Path, s: dict[str, str]) -> str:
    (tmp / "afile").write_text("x")
    s["session"] = s["session"].replace(str(tmp / "rec"), str(tmp / "afile" / "rec"))
    return "session.recordings_dir:"


def dir_in_proc(tmp: Path, s: dict[str, str]) -> str:
    s["session"] = s["session"].replace(str(tmp / "state"), "/proc/dgs-state")
    return "session.state_dir: /proc/dgs-state: is under /proc"


def spacing_nan(tmp: Path, s: dict[str, str]) -> str:
    s["source"] = "spacing_mm = [nan, nan]\n"
    return "source.spacing_mm"


def spacing_inf_depth(tmp: Path, s: dict[str, str]) -> str:
    s["source"] = "depth_mm = inf\n"
    return "source.depth_mm"


def site_newline(tmp: Path, s: dict[str, str]) -> str:
    s["mqtt"] += 'site = "ward-3\\n"\n'
    return "mqtt.site"


def deep_toml(tmp: Path, s: dict[str, str]) -> str:
    s["session"] += "x = " + "[" * 5000 + "]" * 5000 + "\n"
    return "nested too deeply"


def key_unused_by_kind(tmp: Path, s: dict[str, str]) -> str:
    s["source"] = 'kind = "phantom"\ndepth_mm = 80\n'  # depth is a uvc setting
    return "source.depth_mm: is not used by kind 'phantom'"


def clip_keys_without_clip(tmp: Path, s: dict[str, str]) -> str:
    s["session"] += "use_clip = false\n"
    s["clip"] = "command_timeout_s = 0.4\n"
    return "clip: settings given but [session] use_clip = false"


def binary_config(tmp: Path, s: dict[str, str]) -> str:
    s.clear()
    return "not UTF-8"


CASES: list[Case] = [
    secrets_missing,
    secrets_0644,
    secrets_empty,
    secrets_directory,
    secrets_binary,
    ca_missing,
    ca_garbage,
    cert_garbage,
    model_missing,
    model_garbage,
    port_99999,
    port_abc,
    dir_under_file,
    dir_in_proc,
    spacing_nan,
    spacing_inf_depth,
    site_newline,
    deep_toml,
    key_unused_by_kind,
    clip_keys_without_clip,
    binary_config,
]


def _make(tmp: Path, case: Case) -> tuple[Path, str]:
    s = _base(tmp)
    says = case(tmp, s)
    p = _write(tmp, s)
    if case is binary_config:
        p.write_bytes(b"\xff\xfe\x00" + bytes(range(256)))
    return p, says


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_validate_config_refuses_with_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: Case
) -> None:
    p, says = _make(tmp_path, case)
    rc = main(["run", "--config", str(p), "--validate-config"])
    out = capsys.readouterr()
    assert rc == 2, out.out
    assert "config OK" not in out.out
    lines = out.err.splitlines()
    assert lines and all(line.startswith("dgs-edge: error: ") for line in lines), out.err
    assert any(says in line for line in lines), out.err
    assert "Traceback" not in out.err


def test_readonly_directories_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for ro in _readonly_dir(tmp_path):
        s = _base(tmp_path)
        s["session"] = (
            f'recordings_dir = "{ro / "rec"}"\nstate_dir = "{ro}"\n'  # missing + existing
        )
        rc = main(["run", "--config", str(_write(tmp_path, s)), "--validate-config"])
        err = capsys.readouterr().err
        assert rc == 2
        assert "session.recordings_dir:" in err and "session.state_dir:" in err
        assert "not writable" in err and err.count("\n") == 2


def test_good_config_passes_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = _base(tmp_path)
    f = _secret(tmp_path, b"dgs-01\npw\n")
    s["mqtt"] += f'secrets_file = "{f}"\n'
    cafile = ssl.get_default_verify_paths().cafile
    assert cafile and Path(cafile).is_file(), "the system CA bundle (ca-certificates) is needed"
    s["mqtt.tls"] = f'ca_file = "{cafile}"\n'
    rc = main(["run", "--config", str(_write(tmp_path, s)), "--validate-config"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "config OK" in out.out and out.err == ""
    assert not (tmp_path / "rec").exists() and not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    "case",
    [dir_under_file, dir_in_proc, secrets_binary, deep_toml, ca_garbage, spacing_nan],
    ids=lambda c: c.__name__,
)
def test_run_refuses_the_same_with_one_line(tmp_path: Path, case: Case) -> None:
    p, says = _make(tmp_path, case)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [*DGS_EDGE, "run", "--config", str(p)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_refuses_readonly_state_dir_with_one_line(tmp_path: Path) -> None:
    for ro in _readonly_dir(tmp_path):
        s = _base(tmp_path)
        s["session"] = f'recordings_dir = "{tmp_path / "rec"}"\nstate_dir = "{ro / "state"}"\n'
        proc = subprocess.run(
            [*DGS_EDGE, "run", "--config", str(_write(tmp_path, s))],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and "session.state_dir:" in proc.stderr


def test_nan_spacing_refused_at_load_never_written(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[source]\nspacing_mm = [0.2, nan]\n")
    with pytest.raises(ConfigError, match=r"source\.spacing_mm\[1\]: nan is not a finite"):
        load_config(p)
    p.write_text("[source]\nspacing_mm = [0.2, 20.0]\n")  # cm typed as mm
    with pytest.raises(ConfigError, match="plausible ultrasound range"):
        load_config(p)


def test_identifiers_use_fullmatch() -> None:
    from pydantic import ValidationError

    from edge_service.mqtt import MqttSettings
    from edge_service.mqtt.topics import check_session_id

    for bad in ("ward-3\n", "ward 3", "a/b", "#"):
        with pytest.raises(ValidationError):
            MqttSettings(site=bad)
        with pytest.raises(ValidationError):
            MqttSettings(device=bad)
        with pytest.raises(ValueError):
            check_session_id(bad)
    assert check_session_id("abc-123") == "abc-123"


def test_preflight_names_secrets_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = _secret(tmp_path, b"u\np\n", 0o640)
    monkeypatch.setenv("DGS_MQTT_SECRETS_FILE", str(f))
    cfg = load_config(_write(tmp_path, _base(tmp_path)))
    problems = preflight(cfg, check_model=False)
    assert [p.key for p in problems] == ["DGS_MQTT_SECRETS_FILE (environment)"]
