"""Turn a scanner's own DICOM cine (any vendor) into a session recording directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edge_service.acquisition.dicom import DicomSource
from edge_service.errors import InputError
from edge_service.recording.meta import SessionMeta, fsync_dir, write_json_atomic
from edge_service.recording.writer import CINE, FRAMES_CSV, IMU_JSONL, SESSION_JSON


def import_cine(
    dicom_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    meta: SessionMeta,
    *,
    spacing_mm: tuple[float, float] | None = None,
) -> Path:
    """Copy the vendor file unchanged as cine.dcm and write session.json + frames.csv.

    The file is kept byte for byte (its calibration, compression and vendor tags are the
    evidence). Frame times come from the file; spacing from its ultrasound regions, else
    `spacing_mm` (user), else none. Every frame is decoded once first, so a file we cannot
    read never becomes a recording.
    """
    src = DicomSource(dicom_path, spacing_mm=spacing_mm, default_t0=meta.started_t)
    n = sum(1 for _ in src.frames())
    out = Path(out_dir)
    if (out / SESSION_JSON).exists() or (out / CINE).exists():
        raise InputError(f"{out}: already holds a recording; choose a new directory")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (CINE + ".tmp")
    shutil.copyfile(dicom_path, tmp)
    os.replace(tmp, out / CINE)
    times = src.times
    (out / FRAMES_CSV).write_text(
        "index,t\n" + "".join(f"{i},{t!r}\n" for i, t in enumerate(times))
    )
    (out / IMU_JSONL).touch()
    meta.spacing_mm = src.info.spacing_mm
    meta.roi = src.info.roi
    meta.fps_hz = src.info.fps_hz
    meta.n_frames, meta.n_imu, meta.complete = n, 0, True
    meta.started_t = times[0]
    meta.source = {
        "kind": "dicom-import",
        "vendor": src.info.vendor,
        "model": src.info.model,
        "transfer_syntax": src.info.transfer_syntax,
        "spacing_origin": src.info.spacing_origin,
    }
    write_json_atomic(out / SESSION_JSON, meta.to_dict())
    fsync_dir(out)
    return out
