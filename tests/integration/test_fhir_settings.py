"""`[fhir]`: every key validated, the token's sources, and what preflight says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_service.config import load_config
from edge_service.errors import ConfigError
from edge_service.integration.fhirnet import load_token, read_token_file
from edge_service.integration.fhirsettings import FhirSettings, fhir_problems
from edge_service.preflight import preflight


@pytest.mark.parametrize("url", ["ftp://x/fhir", "fhir.example", "http:///fhir", "http://h:99999/"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        FhirSettings(url=url)


def test_url_normalised_and_keys_bounded() -> None:
    assert FhirSettings(url="https://h.example:8443/fhir/").url == "https://h.example:8443/fhir"
    for bad in ({"timeout_s": 0}, {"retry_min_s": -1}, {"max_attempts": -1},
                {"token_env": "1BAD"}, {"nope": 1}):  # fmt: skip
        with pytest.raises(ValidationError):
            FhirSettings(url="http://h/fhir", **bad)  # type: ignore[arg-type]


def test_token_file_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "tok"
    f.write_text("abc.def\n")
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_token_file(f)
    os.chmod(f, 0o600)
    assert read_token_file(f) == "abc.def"
    f.write_text("two words\n")
    with pytest.raises(ConfigError, match="one token"):
        read_token_file(f)
    f.write_text("abc\n")
    s = FhirSettings(url="http://h/fhir", token_file=f, token_env="DGS_T_TOKEN")
    monkeypatch.delenv("DGS_T_TOKEN", raising=False)
    assert load_token(s) == "abc"
    monkeypatch.setenv("DGS_T_TOKEN", "from-env")
    assert load_token(s) == "from-env"
    assert load_token(FhirSettings(url="http://h/fhir", token_env="DGS_T_NONE")) is None


def test_preflight_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DGS_FHIR_TOKEN", raising=False)
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(
        f'[session]\nrecordings_dir = "{tmp_path}/r"\nstate_dir = "{tmp_path}/s"\n'
        f'[fhir]\nurl = "http://127.0.0.1:1/fhir"\ntoken_file = "{tmp_path}/missing"\n'
    )
    probs = [str(p) for p in preflight(load_config(cfg_path), check_model=False)]
    assert any(p.startswith("fhir.token_file: cannot read FHIR token file") for p in probs)
    # Keys that would not be read (no url) are problems too, not silently ignored.
    assert fhir_problems(FhirSettings(timeout_s=5)) == [
        ("fhir.timeout_s", "is not used without fhir.url")
    ]
    with pytest.raises(ConfigError, match="fhir"):
        cfg_path.write_text('[fhir]\nurl = "gopher://x"\n')
        load_config(cfg_path)
