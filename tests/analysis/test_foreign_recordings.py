"""Recordings written by other tools (design contract 2): property tests.

Hypothesis writes session.json / frames.csv / imu.jsonl in every form the contract allows
(probe as text or object, spacing as list / "dx,dy" / number / object, extra fields,
optional fields missing, IMU rows with extra keys, CSV with extra columns and spaces):
they are read, and a few are analysed end to end. Forms outside the contract give one
`InputError` line naming the file and the field, through the CLI too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_service.cli.edge import main
from edge_service.errors import InputError
from edge_service.recording import open_recording
from edge_service.recording.meta import SessionMeta, parse_spacing, read_meta
from edge_service.recording.reader import read_frames_csv

SPACING = (0.2, 0.25)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=12), st.floats(-1e3, 1e3)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=6,
)
KNOWN = {f for f in SessionMeta.__dataclass_fields__}
extra_fields = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: k not in KNOWN), json_values, max_size=4
)


def spacing_forms(dx: float, dy: float) -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [
            [dx, dy],
            f"{dx},{dy}",
            f" {dx} , {dy} ",
            f"{dx}x{dy}",
            f"{dx} {dy}",
            {"dx": dx, "dy": dy},
            {"x": dx, "y": dy},
            {"col": str(dx), "row": str(dy)},
        ]
    )


@st.composite
def foreign_session(draw: st.DrawFn) -> dict[str, Any]:
    d: dict[str, Any] = {
        "side": draw(st.sampled_from(["left", "right", "Left", "RIGHT", "l", "r", " left "])),
        "protocol": draw(st.sampled_from(["fair", "FAIR test", "piriformis", "custom-dynamic"])),
        "spacing_mm": draw(spacing_forms(*SPACING)),
    }
    probe = draw(
        st.one_of(
            st.text(min_size=1, max_size=30),
            st.just("C5-1 curvilinear, 4 MHz"),
            st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        )
    )
    if draw(st.booleans()):
        d["probe"] = probe
    if draw(st.booleans()):
        d["clip"] = draw(st.one_of(st.text(max_size=20), st.just({"model": "other-imu"})))
    for name, strat in (
        ("session_id", st.sampled_from(["abc", "Visit 2 / left", "x" * 100, "s-1"])),
        ("started_t", st.sampled_from([1.7e9, "2026-11-29T10:00:00Z", "1700000000.5"])),
        ("format", st.sampled_from(["dgs.session/1", "dgs.session/1.3", None])),
        ("fps_hz", st.sampled_from([None, 20, "25"])),
        ("n_frames", st.sampled_from([None, 3, 3.0])),
        ("complete", st.booleans()),
    ):
        if draw(st.booleans()):
            d[name] = draw(strat)
    d.update(draw(extra_fields))
    return d


@given(foreign_session())
@settings(max_examples=150, deadline=None)
def test_foreign_session_json_is_read_within_the_contract(doc: dict[str, Any]) -> None:
    meta = SessionMeta.from_dict(json.loads(json.dumps(doc)))
    assert meta.side in ("left", "right")
    assert meta.spacing_mm == pytest.approx(SPACING)
    assert isinstance(meta.probe, dict) and isinstance(meta.clip, dict)
    # Whatever the other tool wrote is kept, and what we write back is valid JSON.
    json.dumps(meta.to_dict(), allow_nan=False)
    from edge_service.recording.meta import _ID_RE

    assert _ID_RE.fullmatch(meta.session_id)


BAD_FIELDS: list[tuple[str, Any]] = [
    ("side", "up"),
    ("side", None),
    ("side", 3),
    ("protocol", ""),
    ("protocol", 42),
    ("spacing_mm", "abc"),
    ("spacing_mm", [0.2]),
    ("spacing_mm", [0.0, 0.2]),
    ("spacing_mm", "nan,0.2"),
    ("spacing_mm", [1e400, 0.2]),
    ("spacing_mm", {"a": 1}),
    ("spacing_mm", True),
    ("probe", 42),
    ("clip", [1, 2]),
    ("roi", [1, 2, 3]),
    ("roi", "all"),
    ("started_t", "yesterday"),
    ("n_frames", -1),
    ("n_frames", 2.5),
    ("fps_hz", "fast"),
    ("format", "dgs.session/2"),
    ("format", "other-tool/1"),
]


@given(foreign_session(), st.sampled_from(BAD_FIELDS))
@settings(max_examples=120, deadline=None)
def test_outside_the_contract_is_one_line_naming_the_field(
    doc: dict[str, Any], bad: tuple[str, Any]
) -> None:
    field, value = bad
    doc = dict(doc)
    if value is None:
        doc.pop(field, None)
    else:
        doc[field] = value
    with pytest.raises(InputError) as ei:
        if field == "format":
            import tempfile

            with tempfile.TemporaryDirectory() as td:
                p = Path(td) / "session.json"
                p.write_text(json.dumps(doc))
                read_meta(p)
        else:
            SessionMeta.from_dict(doc)
    msg = str(ei.value)
    assert "\n" not in msg and f"'{field}'" in msg and "session.json" in msg


@given(
    header=st.sampled_from(
        ["index,t", " index , t ", "t,index", "index,t,exposure_ms", "frame_no,index,t", None]
    ),
    times=st.lists(st.floats(1e9, 2e9), min_size=1, max_size=20),
    pad=st.sampled_from(["", " ", "\t"]),
    trailing_blank=st.booleans(),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_frames_csv_with_extra_columns_and_spaces(
    tmp_path: Path, header: str | None, times: list[float], pad: str, trailing_blank: bool
) -> None:
    cols = [c.strip() for c in (header or "index,t").split(",")]
    lines = [] if header is None else [header]
    for i, t in enumerate(times):
        row = {"index": str(i), "t": repr(t), "exposure_ms": "3.5", "frame_no": str(i + 100)}
        lines.append(",".join(f"{pad}{row[c]}{pad}" for c in cols))
    p = tmp_path / "frames.csv"
    p.write_text("\n".join(lines) + ("\n\n" if trailing_blank else "\n"))
    assert read_frames_csv(p) == times


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("index,t\n0,1.0\nzero,2.0\n3,4\n", "line 3"),
        ("index,t\n0,1.0\n2,2.0\n", "index 2, expected 1"),
        ("frame,time\n0,1.0\n", "'index' and 't'"),
        ("index,t\n0,inf\n1,2\n", "line 2"),
    ],
)
def test_frames_csv_outside_the_contract_names_file_and_line(
    tmp_path: Path, text: str, where: str
) -> None:
    p = tmp_path / "frames.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=r"frames\.csv") as ei:
        read_frames_csv(p)
    assert where in str(ei.value) and "\n" not in str(ei.value)


def test_spacing_forms() -> None:
    for v in ([0.2, 0.3], "0.2,0.3", "0.2 x 0.3", {"dx": 0.2, "dy": 0.3}, ("0.2", "0.3")):
        assert parse_spacing(v) == (0.2, 0.3)
    assert parse_spacing(0.25) == parse_spacing("0.25") == (0.25, 0.25)
    assert parse_spacing(None) is None


# -- end to end: a real simulated recording rewritten as another tool would write it -----


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge_service.phantom import PhantomConfig, simulate_session

    d = tmp_path_factory.mktemp("foreign") / "base"
    cfg = PhantomConfig(width_px=320, height_px=240, gliding="free", side="left")
    return simulate_session(d, seed=77, fps=2.0, config=cfg)


def _rewrite(base: Path, out: Path, doc: dict[str, Any], imu_extra: dict[str, Any]) -> Path:
    out.mkdir()
    (out / "cine.dcm").symlink_to(base / "cine.dcm")
    times = read_frames_csv(base / "frames.csv")
    (out / "frames.csv").write_text(
        "frame_no , index , t , gain\n"
        + "".join(f"{i + 1} , {i} , {t!r} , 0.5\n" for i, t in enumerate(times))
    )
    rows = [json.loads(x) for x in (base / "imu.jsonl").read_text().splitlines() if x.strip()]
    keep = ("t", "seq", "flexion_deg", "adduction_deg", "rotation_deg")
    (out / "imu.jsonl").write_text(
        "".join(json.dumps({**{k: r[k] for k in keep}, **imu_extra}) + "\n" for r in rows)
    )
    (out / "session.json").write_text(json.dumps(doc))
    return out


@pytest.mark.sim
@given(doc=foreign_session(), imu_extra=extra_fields)
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_foreign_recordings_are_analysed_inspected_and_compared(
    recorded: Path,
    tmp_path_factory: pytest.TempPathFactory,
    doc: dict[str, Any],
    imu_extra: dict[str, Any],
) -> None:
    base = json.loads((recorded / "session.json").read_text())
    doc = dict(doc)
    doc.pop("n_frames", None)  # the real cine decides how many frames there are
    doc["spacing_mm"] = [base["spacing_mm"][0], base["spacing_mm"][1]]
    d = _rewrite(recorded, tmp_path_factory.mktemp("fr") / "s", doc, imu_extra)
    rec = open_recording(d)
    assert rec.n_frames == len(read_frames_csv(recorded / "frames.csv"))
    assert main(["inspect", str(d), "--json"]) == 0
    assert main(["analyze", str(d), "--quiet"]) == 0
    res = json.loads((d / "result.json").read_text())
    assert res["schema"] == "dgs.session-result/1.1"
    assert res["side"] == rec.meta.side
    assert main(["compare", str(d), str(d), "--json"]) == 0


@pytest.mark.sim
@pytest.mark.parametrize("cmd", ["analyze", "inspect"])
@pytest.mark.parametrize(
    ("field", "value"),
    [("spacing_mm", "abc"), ("side", "middle"), ("probe", 5), ("protocol", None)],
)
def test_cli_refuses_a_bad_foreign_recording_in_one_line(
    recorded: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cmd: str,
    field: str,
    value: Any,
) -> None:
    doc = json.loads((recorded / "session.json").read_text())
    if value is None:
        doc.pop(field)
    else:
        doc[field] = value
    d = _rewrite(recorded, tmp_path / "bad", doc, {})
    assert main([cmd, str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "session.json" in err[0] and f"'{field}'" in err[0], err
    assert "Traceback" not in err[0]


def test_session_json_never_stores_a_source_path() -> None:
    meta = SessionMeta(
        side="left",
        protocol="fair",
        source={"kind": "dicom", "device": "/data/Doe_Jane_1970-01-01.dcm", "fps_hz": 20},
    )
    text = json.dumps(meta.to_dict())
    assert "Doe" not in text and "/data" not in text
    assert meta.source["kind"] == "dicom" and meta.source["source_id"].startswith("src-")
    assert meta.source["fps_hz"] == 20
    # A UVC device index or device node is hardware, not a name: kept.
    uvc = SessionMeta(side="left", protocol="fair", source={"kind": "uvc", "device": "0"})
    assert uvc.source["device"] == "0"
    again = SessionMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again.source["source_id"] == meta.source["source_id"]


def test_a_path_added_after_construction_is_not_written() -> None:
    meta = SessionMeta(side="right", protocol="fair")
    meta.source["path"] = "C:\\scans\\Mustermann Max.dcm"
    text = json.dumps(meta.to_dict())
    assert "Mustermann" not in text and meta.source["source_id"] in text
