"""Hypothesis strategies for the fuzz targets: the committed corpus mutated (bit flips, byte
overwrites, truncation, splices, header values set to edge cases) plus inputs built from
scratch. Mutating known-good inputs gets past the first checks (magic numbers, CRC, JSON
syntax) so the deep code is reached, which random bytes alone rarely do."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.targets import corpus_inputs

INTERESTING_INTS = [0, 1, -1, 2, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 10**8]
INTERESTING_FLOATS = [0.0, -0.0, 1e-300, 1e300, math.inf, -math.inf, math.nan, 1e9, -1.0]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], max_len: int = 1 << 20) -> bytes:
    """A seed with a few random mutations (or a fresh random buffer)."""
    if not seeds or draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    # An index, not the seed itself: failure reports stay short.
    data = bytearray(seeds[draw(st.integers(0, len(seeds) - 1))])
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 4))
        n = len(data)
        if n == 0:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        i = draw(st.integers(0, n - 1))
        if op == 0:  # flip one bit
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:  # overwrite with an interesting little-endian integer
            v = draw(st.sampled_from(INTERESTING_INTS))
            width = draw(st.sampled_from([1, 2, 4]))
            data[i : i + width] = (v % (1 << (8 * width))).to_bytes(width, "little")
        elif op == 2:  # truncate
            del data[i:]
        elif op == 3:  # insert random bytes
            data[i:i] = draw(st.binary(min_size=1, max_size=32))
        else:  # duplicate a slice (repeated frames, repeated elements)
            j = draw(st.integers(i, min(n, i + 256)))
            data[j:j] = data[i:j]
    return bytes(data[:max_len])


# -- decoder ---------------------------------------------------------------------------------


def decoder_inputs() -> st.SearchStrategy[tuple[bytes, list[int]]]:
    seeds = [d[0] for _, d in corpus_inputs("decoder")]
    return st.tuples(mutated(seeds, 1 << 16), st.lists(st.integers(0, 1 << 16), max_size=8))


# -- DICOM -----------------------------------------------------------------------------------

DICOM_EDITS: list[tuple[str, Any]] = [
    (
        "NumberOfFrames",
        st.sampled_from(["0", "-1", "1", "3", "100000000", "2147483647", "abc", ""]),
    ),
    ("Rows", st.sampled_from([0, 1, 2, 65535, 8192, 16])),
    ("Columns", st.sampled_from([0, 1, 2, 65535, 8192, 16])),
    ("BitsAllocated", st.sampled_from([0, 1, 8, 12, 16, 32, 64])),
    ("BitsStored", st.sampled_from([0, 1, 8, 12, 16, 40])),
    ("SamplesPerPixel", st.sampled_from([0, 1, 2, 3, 4, 65535])),
    (
        "PhotometricInterpretation",
        st.sampled_from(["MONOCHROME1", "RGB", "PALETTE COLOR", "YBR_FULL_422", "X"]),
    ),
    (
        "PixelSpacing",
        st.sampled_from([["nan", "0.2"], ["inf", "inf"], ["0", "0"], ["1e9", "1"], ["0.2"]]),
    ),
    ("FrameTime", st.sampled_from(["nan", "-1", "0", "1e308", "x"])),
    ("PlanarConfiguration", st.sampled_from([0, 1, 7])),
]


@st.composite
def dicom_header_edit(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed re-written by pydicom with one or two header values set to an edge case."""
    import io
    import warnings

    import pydicom

    raw = seeds[draw(st.integers(0, len(seeds) - 1))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(raw))
        except Exception:  # a hostile seed pydicom cannot even read: use it unchanged
            return raw
        for _ in range(draw(st.integers(1, 2))):
            kw, values = draw(st.sampled_from(DICOM_EDITS))
            value = draw(values)
            try:
                setattr(ds, kw, value)
            except Exception:  # pydicom refuses some values for the VR: keep the seed's
                continue
        if "SequenceOfUltrasoundRegions" in ds and draw(st.booleans()):
            reg = ds.SequenceOfUltrasoundRegions[0]
            reg.PhysicalDeltaX = draw(st.sampled_from(INTERESTING_FLOATS))
            reg.RegionDataType = draw(st.sampled_from([1, 2, 3, 0]))
            reg.PhysicalUnitsXDirection = draw(st.sampled_from([0, 3, 4]))
        out = io.BytesIO()
        try:
            ds.save_as(out)
        except Exception:
            return raw
    return out.getvalue()


def dicom_inputs() -> st.SearchStrategy[bytes]:
    seeds = [d for _, d in corpus_inputs("dicom")]
    return st.one_of(mutated(seeds), dicom_header_edit(seeds))


# -- recording -------------------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
SESSION_KEYS = [
    "format", "session_id", "side", "protocol", "spacing_mm", "roi", "started_t", "n_frames",
    "n_imu", "complete", "probe", "clip", "source", "fps_hz", "extra",
]  # fmt: skip


@st.composite
def session_json(draw: st.DrawFn, seed: dict[str, Any]) -> bytes:
    d = dict(seed)
    for _ in range(draw(st.integers(0, 4))):
        d[draw(st.sampled_from(SESSION_KEYS))] = draw(json_values)
    if draw(st.integers(0, 5)) == 0:
        d = draw(json_values)
    return json.dumps(d).encode()


@st.composite
def recording_inputs_from(draw: st.DrawFn, seeds: list[dict[str, bytes]]) -> dict[str, bytes]:
    seed = draw(st.sampled_from(seeds))
    files = dict(seed)
    base_meta = json.loads(seed["session.json"]) if "session.json" in seed else {}
    if draw(st.booleans()):
        files["session.json"] = draw(session_json(base_meta if isinstance(base_meta, dict) else {}))
    for name in ("frames.csv", "imu.jsonl"):
        if draw(st.booleans()):
            files[name] = draw(mutated([seed.get(name, b"")], 4096))
    if draw(st.integers(0, 9)) == 0:
        files.pop(draw(st.sampled_from(sorted(files))), None)
    return files


def recording_inputs() -> st.SearchStrategy[dict[str, bytes]]:
    return recording_inputs_from([d for _, d in corpus_inputs("recording")])


# -- config ----------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
        )
    return '""'


CONFIG_KEYS: dict[str, list[str]] = {
    "session": ["side", "protocol", "recordings_dir", "state_dir", "use_clip", "max_duration_s"],
    "source": ["kind", "device", "crop_px", "depth_mm", "width_mm", "spacing_mm", "fps_hz"],
    "detector": ["model_path", "precision", "threads", "nerve_threshold", "shadow_ratio"],
    "mqtt": ["url", "site", "device", "protocol", "keepalive_s", "secrets_file", "tls", "versions"],
    "analysis": ["tracker", "gliding", "min_nerve_confidence", "muscle_offset_mm"],
    "clip": ["port", "baudrate", "vid_pids", "clock", "timeline"],
}
_toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16),
    st.sampled_from(
        ["mqtt://h:99999", "mqtt://h:abc", "mqtts://h:8883", "left", "int8", "/proc/x"]
    ),
)
toml_values = st.recursive(
    _toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text("abcdefgh_", max_size=8), inner, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def generated_toml(draw: st.DrawFn) -> bytes:
    lines = []
    for section in draw(st.lists(st.sampled_from(sorted(CONFIG_KEYS)), max_size=4, unique=True)):
        lines.append(f"[{section}]")
        keys = CONFIG_KEYS[section] + ["bogus"]
        for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
            lines.append(f"{key} = {_toml_value(draw(toml_values))}")
    return ("\n".join(lines) + "\n").encode()


def config_inputs() -> st.SearchStrategy[bytes]:
    seeds = [d for _, d in corpus_inputs("config")]
    return st.one_of(generated_toml(), mutated(seeds, 1 << 16))


# -- payloads --------------------------------------------------------------------------------

RESULT_KEYS = ["nerve", "calcification", "gliding", "maneuvers", "software", "session_id", "side"]


@st.composite
def result_docs(draw: st.DrawFn, seeds: list[Any]) -> Any:
    if seeds and draw(st.booleans()):
        doc = json.loads(json.dumps(draw(st.sampled_from(seeds))))
        for _ in range(draw(st.integers(1, 4))):
            target = doc
            path = draw(
                st.lists(
                    st.sampled_from(
                        [
                            *RESULT_KEYS,
                            "ap_diameter_mm",
                            "present",
                            "peak_flexion_deg",
                            "model",
                            "name",
                        ]
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
            for k in path[:-1]:
                nxt = target.get(k) if isinstance(target, dict) else None
                if not isinstance(nxt, dict):
                    break
                target = nxt
            if isinstance(target, dict):
                target[path[-1]] = draw(json_values)
        return doc
    return draw(st.dictionaries(st.sampled_from(RESULT_KEYS), json_values, max_size=6))


def payload_inputs() -> st.SearchStrategy[Any]:
    return result_docs([d for _, d in corpus_inputs("payloads")])


STRATEGIES = {
    "decoder": decoder_inputs,
    "dicom": dicom_inputs,
    "recording": recording_inputs,
    "config": config_inputs,
    "payloads": payload_inputs,
}
