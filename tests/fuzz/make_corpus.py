"""Regenerate the committed seed corpus of the fuzz targets (tests/fuzz/corpus/).

    .venv/bin/python -m tests.fuzz.make_corpus

Seeds are small valid inputs of every kind each parser accepts (so mutations reach deep
code) plus the hostile reproducers of issue 12. DICOM seeds are real vendor files of
pydicom-data cut down to a few dozen pixels, keeping their vendor headers (ultrasound
regions, palettes, transfer syntaxes).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from tests.fuzz.targets import CORPUS

ROOT = Path(__file__).resolve().parents[2]


def _small(name: str, rows: int = 24, cols: int = 32, frames: int | None = None) -> pydicom.Dataset:
    """A vendor file with its pixel data cut to rows x cols (and `frames` frames), native."""
    ds = pydicom.dcmread(str(get_testdata_file(name)))
    arr = ds.pixel_array
    # The vendor test files carry placeholder names; the committed seeds carry none at all.
    ds.PatientName, ds.PatientID = "ANON^FUZZ", "FUZZ-1"
    for kw in ("InstitutionName", "ReferringPhysicianName", "OperatorsName", "PatientBirthDate"):
        if kw in ds:
            del ds[kw]
    for elem in list(ds):
        # Overlays, curves and private blobs: the seeds stay small; pixels and regions stay.
        if (
            elem.keyword != "PixelData"
            and elem.VR in ("OB", "OW", "UN", "OF")
            and len(elem.value) > 1024
        ):
            del ds[elem.tag]
    n = int(ds.get("NumberOfFrames") or 1)
    if n == 1:
        arr = arr[None]
    arr = arr[: frames or n, :rows, :cols]
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    photometric = str(ds.PhotometricInterpretation)
    if photometric.startswith("YBR"):
        photometric = "RGB"
        arr = pydicom.pixels.convert_color_space(arr, "YBR_FULL", "RGB")
    ds.set_pixel_data(arr if arr.shape[0] > 1 else arr[0], photometric, int(ds.BitsStored))
    if arr.shape[0] > 1:
        ds.NumberOfFrames = arr.shape[0]
    elif "NumberOfFrames" in ds:
        del ds.NumberOfFrames
    if photometric == "PALETTE COLOR":
        ds.PhotometricInterpretation = "PALETTE COLOR"
    for reg in ds.get("SequenceOfUltrasoundRegions", []):
        reg.RegionLocationMaxX1 = min(int(reg.RegionLocationMaxX1), cols - 1)
        reg.RegionLocationMaxY1 = min(int(reg.RegionLocationMaxY1), rows - 1)
        reg.RegionLocationMinX0 = min(int(reg.RegionLocationMinX0), cols - 1)
        reg.RegionLocationMinY0 = min(int(reg.RegionLocationMinY0), rows - 1)
    return ds


def _bytes(ds: pydicom.Dataset, ts: str | None = None) -> bytes:
    out = io.BytesIO()
    if ts in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        ds.compress(ts)
    elif ts is not None:
        ds.file_meta.TransferSyntaxUID = ts
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_seeds() -> dict[str, bytes]:
    from tests.acquisition import hostile as H

    seeds = {
        "ob_native.dcm": _bytes(_small("OBXXXX1A.dcm")),
        "ob_2frame_rle.dcm": _bytes(_small("OBXXXX1A_2frame.dcm"), RLELossless),
        "vendor_big_endian.dcm": Path(str(get_testdata_file("ExplVR_BigEnd.dcm"))).read_bytes(),
        "ob_deflated.dcm": _bytes(_small("OBXXXX1A.dcm"), DeflatedExplicitVRLittleEndian),
        "aloka16_native.dcm": _bytes(_small("gdcm-US-ALOKA-16.dcm")),
        "us1_rgb_jpegls.dcm": _bytes(_small("US1_UNCR.dcm"), JPEGLSLossless),
        "us1_rgb_j2k.dcm": _bytes(_small("US1_UNCR.dcm", 64, 64), JPEG2000Lossless),
        "ybr_3frame_rle.dcm": _bytes(_small("examples_ybr_color.dcm", frames=3), RLELossless),
    }
    # Issue 12's hostile headers on a small file.
    tmp = CORPUS / "_tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        small = tmp / "small.dcm"
        small.write_bytes(seeds["ob_2frame_rle.dcm"])
        for name, edit in {
            "hostile_frames_1e8.dcm": H.set_frames(100_000_000),
            "hostile_frames_0.dcm": H.set_frames(0),
            "hostile_frames_missing.dcm": H.set_frames(None),
            "hostile_doppler_only.dcm": H.set_regions(
                H.region(1, 1, (3, 3), (0.0, 0.0)), H.region(3, 1, (3, 3), (0.5, 0.5))
            ),
        }.items():
            ds = pydicom.dcmread(small)
            edit(ds)
            buf = io.BytesIO()
            ds.save_as(buf)
            seeds[name] = buf.getvalue()
        plain = tmp / "plain.dcm"
        plain.write_bytes(seeds["ob_native.dcm"])
        seeds["hostile_deflate_label.dcm"] = H.mislabel_deflate(plain, tmp / "m.dcm").read_bytes()
    finally:
        shutil.rmtree(tmp)
    return seeds


def decoder_seeds() -> dict[str, bytes]:
    from dgsclip import protocol as P

    e = P.Encoder()
    stream = bytearray()
    stream += bytes(e.hello(None, 0, "1.2.0", "clip-7", "lsm6dsox", 100, 1))
    for i in range(5):
        pq = (16384, 0, 0, 0) if i % 2 else None
        stream += bytes(
            e.sample(None, i * 10_000, 100 * i, -50, 3000, (16384, 0, 0, 0), 0, 0, 0, pq)
        )
    stream += bytes(e.log(None, 60_000, "calibrating: keep still", 20))
    stream += bytes(e.ack(None, 70_000, 3, 1))
    e2 = P.Encoder()
    vec = json.loads((ROOT / "tests" / "vectors" / "protocol_v1.json").read_text())
    frames = [bytes.fromhex(v["hex"]) for v in vec["frames"]]
    return {
        "session_stream.bin": bytes(stream),
        "text_between_frames.bin": b"boot: v1.2.0\r\n" + bytes(stream[:60]) + b"MicroPython\r\n",
        "reboot.bin": bytes(e2.hello(None, 0, "1.2.0", "clip-7", "mpu6050", 200, 0))
        + bytes(stream),
        "vectors.bin": b"".join(frames),
    }


def recording_seeds() -> dict[str, dict[str, str]]:
    from edge_service.acquisition.frame import Frame
    from edge_service.recording import RecordingWriter, SessionMeta

    tmp = CORPUS / "_rec"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        meta = SessionMeta(side="right", protocol="fair", spacing_mm=(0.2, 0.2))
        meta.session_id = "fuzzseed00000001"
        meta.started_t = 1_700_000_000.0
        with RecordingWriter(tmp, meta) as w:
            for i in range(3):
                w.add_frame(Frame(np.full((16, 24), 40 * i, np.uint8), 1.7e9 + i / 20, i, None))
                w.add_imu({"t": 1.7e9 + i / 20, "seq": i, "flexion_deg": 10.0 * i,
                           "adduction_deg": 1.0, "rotation_deg": -2.0})  # fmt: skip
        files = {n: (tmp / n).read_text() for n in ("session.json", "frames.csv", "imu.jsonl")}
        full = dict(
            files, **{"cine.dcm.b64": base64.b64encode((tmp / "cine.dcm").read_bytes()).decode()}
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    empty = dict(files)
    meta_d = json.loads(empty["session.json"])
    meta_d["n_frames"] = 0
    empty["session.json"] = json.dumps(meta_d)
    return {"with_cine.json": full, "no_cine.json": empty}


def config_seeds() -> dict[str, bytes]:
    example = (ROOT / "deploy" / "dgs-edge.example.toml").read_bytes()
    phantom = b"""[session]
side = "right"
use_clip = false
max_duration_s = 5
[source]
kind = "phantom"
fps_hz = 4
spacing_mm = [0.2, 0.2]
[detector]
precision = "int8"
nerve_threshold = 0.6
[analysis.gliding]
restricted_below_mm_per_10deg = 0.5
[mqtt]
url = "mqtt://127.0.0.1:1883"
site = "ward-3"
device = "box-1"
"""
    return {
        "example.toml": example,
        "phantom.toml": phantom,
        "nan_spacing.toml": b"[source]\nspacing_mm = [nan, nan]\n",
        "deep.toml": b"[session]\nx = " + b"[" * 200 + b"]" * 200 + b"\n",
        "newline_site.toml": b'[mqtt]\nsite = "ward-3\\n"\n',
    }


def payload_seeds() -> dict[str, str]:
    from tests.mqtt.sample_result import sample_result

    doc = sample_result()
    odd = json.loads(json.dumps(doc))
    odd["maneuvers"] = {"not": "a list"}
    odd["nerve"]["ap_diameter_mm"] = float("nan")
    return {"sample_result.json": json.dumps(doc), "odd_result.json": json.dumps(odd)}


def main() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups: dict[str, dict[str, bytes]] = {
            "dicom": dicom_seeds(),
            "decoder": decoder_seeds(),
            "config": config_seeds(),
            "recording": {
                k: json.dumps(v, indent=1).encode() for k, v in recording_seeds().items()
            },
            "payloads": {k: v.encode() for k, v in payload_seeds().items()},
        }
    for name, files in groups.items():
        d = CORPUS / name
        d.mkdir(parents=True, exist_ok=True)
        for fname, data in files.items():
            (d / fname).write_bytes(data)
        print(f"{name}: {len(files)} seeds, {sum(map(len, files.values()))} bytes")


if __name__ == "__main__":
    main()
