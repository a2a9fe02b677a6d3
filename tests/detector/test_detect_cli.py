"""`dgs-edge detect FILE [--spacing DX,DY] [--json]`: the JSON-lines contract, spacing
handling and one-line errors, with the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from pydicom.data import get_testdata_file

from benchmarks.ood_negatives import phantom_frame
from edge_service.cli.edge import main

REQUIRED = {"frame", "view_ok", "view_score", "view_reason", "nerve", "calcification"}


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:  # type: ignore[type-arg]
    out = capsys.readouterr().out.strip().splitlines()
    return [json.loads(line) for line in out]


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[float, float]]:
    d = tmp_path_factory.mktemp("frames")
    spacing = None
    for i, seed in enumerate((33_000, 33_001, 33_002)):
        f = phantom_frame(seed)
        spacing = f.spacing_mm
        # Same ROI-free full frame as a capture card would give (PNG is lossless).
        cv2.imwrite(str(d / f"f{i:03d}.png"), f.pixels)
    assert spacing is not None
    return d, spacing


def _check_record(r: dict, i: int) -> None:  # type: ignore[type-arg]
    assert set(r) >= REQUIRED
    assert r["frame"] == i
    assert isinstance(r["view_ok"], bool)
    assert isinstance(r["view_score"], float) and 0.0 <= r["view_score"] <= 1.0
    assert (r["view_reason"] is None) == r["view_ok"]
    assert isinstance(r["nerve"]["found"], bool)
    assert isinstance(r["calcification"]["present"], bool)
    if not r["view_ok"]:
        assert not r["nerve"]["found"] and not r["calcification"]["present"]


def test_json_lines_with_spacing_give_mm(
    phantom_dir: tuple[Path, tuple[float, float]], capsys: pytest.CaptureFixture[str]
) -> None:
    d, (dx, dy) = phantom_dir
    assert main(["detect", str(d), "--json", "--spacing", f"{dx},{dy}"]) == 0
    recs = _lines(capsys)
    assert len(recs) == 3
    for i, r in enumerate(recs):
        _check_record(r, i)
        assert r["spacing_mm"] == pytest.approx([dx, dy])
        assert r["spacing_origin"] == "user"
    found = [r for r in recs if r["view_ok"] and r["nerve"]["found"]]
    assert len(found) >= 2  # the gate accepts held-out phantom frames
    for r in found:
        assert 3.0 < r["nerve"]["ap_mm"] < 20.0 and r["nerve"]["csa_mm2"] > 10.0
        assert r["measure_reason"] is None


def test_without_spacing_mm_are_null_with_a_reason(
    phantom_dir: tuple[Path, tuple[float, float]], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _ = phantom_dir
    assert main(["detect", str(d), "--json"]) == 0
    recs = _lines(capsys)
    assert len(recs) == 3
    for i, r in enumerate(recs):
        _check_record(r, i)
        assert r["spacing_mm"] is None
        assert r["nerve"]["ap_mm"] is None and r["nerve"]["csa_mm2"] is None
        if r["nerve"]["found"]:
            assert r["measure_reason"] == "no_spacing"


def test_real_echo_cine_frames_have_no_nerve(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(get_testdata_file("examples_ybr_color.dcm"))
    assert main(["detect", path, "--json"]) == 0
    recs = _lines(capsys)
    assert len(recs) == 30
    for i, r in enumerate(recs):
        _check_record(r, i)
        assert r["spacing_origin"] is not None  # the file's own ultrasound region
        assert not r["nerve"]["found"] and not r["calcification"]["present"]


def _real_ultrasound_files() -> list[str]:
    """Every ultrasound DICOM of pydicom + pydicom-data that the sources open."""
    import warnings

    import pydicom

    from benchmarks.bench_ood import real_files

    out = []
    for f, _ in real_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # pydicom raises many types on its deliberately broken files
            continue
        if str(getattr(ds, "Modality", "")) == "US":
            out.append(f)
    return out


US_FILES = _real_ultrasound_files()


def test_the_real_ultrasound_set_is_there() -> None:
    names = {Path(f).name for f in US_FILES}
    assert len(US_FILES) >= 15
    assert {"color3d_jpeg_baseline.dcm", "OBXXXX1A.dcm", "US1_UNCR.dcm"} <= names


@pytest.mark.sim
@pytest.mark.parametrize("path", US_FILES, ids=lambda p: Path(p).name)
def test_real_ultrasound_of_other_anatomy_gives_no_nerve_report(
    path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dgs-edge detect --json` on the real vendor ultrasound of pydicom / pydicom-data
    (echocardiography, obstetric, abdominal): zero nerves and zero calcifications."""
    rc = main(["detect", path, "--json"])
    out = capsys.readouterr()
    if rc != 0:
        # A file no decoder reads is refused with one line, and nothing is reported.
        assert rc == 2 and len(out.err.strip().splitlines()) == 1 and not out.out.strip()
        return
    recs = [json.loads(line) for line in out.out.splitlines() if line.strip()]
    assert recs
    for r in recs:
        assert 0.0 <= r["view_score"] <= 1.0
        assert not r["nerve"]["found"], (r["frame"], r["view_score"])
        assert not r["calcification"]["present"], (r["frame"], r["view_score"])


def test_text_output_summarises(phantom_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    d, (dx, dy) = phantom_dir
    assert main(["detect", str(d), "--spacing", f"{dx},{dy}"]) == 0
    cap = capsys.readouterr()
    assert len(cap.out.strip().splitlines()) == 3
    assert "3 frames" in cap.err


@pytest.mark.parametrize("bad", ["0,0.2", "-0.1", "nan,0.2", "inf", "0.2,0.2,0.2", "5,5", "a,b"])
def test_bad_spacing_is_one_line(
    bad: str, phantom_dir: tuple[Path, tuple[float, float]], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _ = phantom_dir
    with pytest.raises(SystemExit) as exc:
        main(["detect", str(d), "--spacing", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "spacing" in err[0]


def test_spacing_that_contradicts_the_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(get_testdata_file("OBXXXX1A.dcm"))  # has its own 0.262 mm/px region
    assert main(["detect", path, "--spacing", "0.5,0.5"]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and "contradicts" in err[0] and cap.out == ""
    # Agreeing with the file is fine.
    assert main(["detect", path, "--json", "--spacing", "0.2623,0.2623"]) == 0
    assert len(_lines(capsys)) == 1


@pytest.mark.parametrize("kind", ["missing", "garbage"])
def test_unknown_file_is_one_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "x.dat"
    if kind == "garbage":
        p.write_bytes(b"\x00\x01not an image at all" * 10)
    assert main(["detect", str(p), "--json"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert len(cap.err.strip().splitlines()) == 1


def test_colour_doppler_screenshot_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An RGB capture with a colour flow blob inside the image: the folder source reports
    the chroma, the gate refuses the frame for `colour`; the gray twin is accepted."""
    f = phantom_frame(33_010)
    bgr = cv2.cvtColor(f.pixels, cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(tmp_path / "a_gray.png"), bgr)  # 3 channels, but no chroma
    r = f.region
    cx, cy = (r.x0 + r.x1) // 2, (r.y0 + r.y1) // 2
    cv2.ellipse(bgr, (cx, cy), (40, 15), 0, 0, 360, (30, 30, 220), -1)  # red flow, BGR
    cv2.imwrite(str(tmp_path / "b_doppler.png"), bgr)
    assert main(["detect", str(tmp_path), "--json"]) == 0
    gray, doppler = _lines(capsys)
    assert gray["view_ok"] and gray["view_reason"] is None
    assert not doppler["view_ok"] and doppler["view_reason"] == "colour"
    assert not doppler["nerve"]["found"] and not doppler["calcification"]["present"]
