"""Root configuration of the appliance: one TOML file, validated section by section.

Each area owns its settings model (units in field names, documented defaults); this module
only composes them. Unknown keys are errors (`extra="forbid"`) so a typo never silently falls
back to a default. Secrets never live here: MQTT credentials come from the environment or a
secrets file named in `[mqtt]` (see docs/mqtt.md).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_service.acquisition.settings import SourceSettings
from edge_service.analysis.settings import AnalysisSettings
from edge_service.clip.settings import ClipLinkSettings
from edge_service.detector.settings import DetectorSettings
from edge_service.dicomnet.settings import DicomSettings, WorklistSettings
from edge_service.errors import ConfigError
from edge_service.integration.fhirsettings import FhirSettings
from edge_service.mqtt.settings import MqttSettings
from edge_service.procedure.settings import ProcedureSettings
from edge_service.storage import StorageSettings
from edge_service.workstation.settings import WorkstationSettings


class SessionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    side: Literal["left", "right"] = Field(default="left", description="examined side")
    protocol: Literal["fair", "piriformis", "neutral"] = Field(
        default="fair", description="manoeuvre protocol of the session"
    )
    recordings_dir: Path = Field(
        default=Path("recordings"),
        description="where session recordings are kept (one folder each)",
    )
    state_dir: Path = Field(
        default=Path("state"), description="service state (the MQTT outbox); must survive restarts"
    )
    use_clip: bool = Field(
        default=True, description="expect an IMU clip; without it angles are unknown"
    )
    max_duration_s: float = Field(
        default=300.0, gt=0, le=3600, description="a session stops after this long"
    )


class AppConfig(BaseModel):
    """The whole appliance configuration (`dgs-edge run --config FILE`)."""

    model_config = ConfigDict(extra="forbid")

    session: SessionSettings = Field(default_factory=SessionSettings)
    source: SourceSettings = Field(default_factory=SourceSettings)
    clip: ClipLinkSettings = Field(default_factory=ClipLinkSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    workstation: WorkstationSettings = Field(default_factory=WorkstationSettings)
    worklist: WorklistSettings = Field(default_factory=WorklistSettings)
    dicom: DicomSettings = Field(default_factory=DicomSettings)
    fhir: FhirSettings = Field(default_factory=FhirSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    procedure: ProcedureSettings = Field(default_factory=ProcedureSettings)


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


#: A config is a few kB; a huge file is the wrong file (or an attack on the parser).
MAX_CONFIG_BYTES = 1 << 20
#: Sections nest 3 deep today; anything far deeper is not a config of ours.
MAX_DEPTH = 16


def _check_values(obj: object, where: str, depth: int = 0) -> None:
    """Refuse NaN/inf anywhere (TOML allows `nan` and `inf`, which pass `gt=0` checks) and
    absurd nesting, naming the key."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where or '(root)'}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ConfigError(f"{where}: {obj} is not a finite number")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_values(v, f"{where}.{k}" if where else str(k), depth + 1)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_values(v, f"{where}[{i}]", depth + 1)


def load_config(path: str | Path | None) -> AppConfig:
    """Read and validate a TOML config; None gives the embedded defaults."""
    if path is None:
        return AppConfig()
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {p} is over {MAX_CONFIG_BYTES >> 10} KiB")
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text (binary file?)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a config") from None
    _prefix_errors(p, _check_values, data, "")
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{p}: {_format_errors(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a config") from None


def _prefix_errors(p: Path, fn: Callable[..., None], *args: object) -> None:
    try:
        fn(*args)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
