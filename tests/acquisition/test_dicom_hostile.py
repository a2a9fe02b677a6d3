"""DICOM headers are not trusted (issue 12): every reproducer of the issue, crafted from real
vendor files, gives one InputError line naming the problem - never a MemoryError, a traceback,
a wrong frame count or a wrong mm value - and peak memory stays within the documented bound."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_service.acquisition.dicom import DicomSource, us_calibration
from edge_service.acquisition.dicomguard import DEFAULT_BUDGET, DicomBudget
from edge_service.cli.edge import main
from edge_service.errors import InputError
from tests.acquisition import hostile as H

Maker = Callable[[Path], Path]


def _rows_cols(v: int) -> Callable[[object], None]:
    def edit(ds: object) -> None:
        ds.Rows = v  # type: ignore[attr-defined]
        ds.Columns = v  # type: ignore[attr-defined]

    return edit


# (id, maker, text the one-line error must contain)
HOSTILE: list[tuple[str, Maker, str]] = [
    (
        "frames-1e8-native",
        lambda p: H.rewrite("OBXXXX1A_2frame.dcm", p, H.set_frames(100_000_000)),
        "NumberOfFrames=100000000",
    ),
    (
        "frames-2^31-rle",
        lambda p: H.rewrite("OBXXXX1A_rle_2frame.dcm", p, H.set_frames(2**31 - 1)),
        "NumberOfFrames=2147483647",
    ),
    (
        "frames-0-jpeg-cine",
        lambda p: H.rewrite("color3d_jpeg_baseline.dcm", p, H.set_frames(0)),
        "NumberOfFrames=0",
    ),
    (
        "frames-missing-jpeg-cine",
        lambda p: H.rewrite("color3d_jpeg_baseline.dcm", p, H.set_frames(None)),
        "holds 120 compressed frame",
    ),
    (
        "frames-missing-native-2frame",
        lambda p: H.rewrite("OBXXXX1A_2frame.dcm", p, H.set_frames(None)),
        "~2 frames",
    ),
    (
        "frames-more-than-offset-table",
        lambda p: H.rewrite("examples_ybr_color.dcm", p, H.set_frames(65)),
        "Basic Offset Table lists 30",
    ),
    (
        "frames-more-than-rle-fragments",
        lambda p: H.rewrite("OBXXXX1A_rle_2frame.dcm", p, H.set_frames(3)),
        "only 2 fragment",
    ),
    (
        "frames-fewer-than-native-data",
        lambda p: H.rewrite("OBXXXX1A_2frame.dcm", p, H.set_frames(1)),
        "~2 frames",
    ),
    (
        "rows-cols-65535-rle",
        lambda p: H.rewrite("OBXXXX1A_rle.dcm", p, _rows_cols(65535)),
        "Rows=65535",
    ),
    (
        "frame-over-budget",
        lambda p: H.rewrite(
            "OBXXXX1A_rle.dcm",
            p,
            lambda ds: (_rows_cols(8192)(ds), setattr(ds, "BitsAllocated", 16)),
        ),
        "frame budget",
    ),
    (
        "delta-x-nan",
        lambda p: H.rewrite(
            "OBXXXX1A.dcm", p, H.set_regions(H.region(1, 1, (3, 3), (float("nan"), 0.0207)))
        ),
        "PhysicalDeltaX=nan",
    ),
    (
        "delta-x-1e9-cm",
        lambda p: H.rewrite("OBXXXX1A.dcm", p, H.set_regions(H.region(1, 1, (3, 3), (1e9, 0.02)))),
        "outside the plausible ultrasound range",
    ),
    (
        "delta-y-inf",
        lambda p: H.rewrite(
            "OBXXXX1A.dcm", p, H.set_regions(H.region(1, 1, (3, 3), (0.02, float("inf"))))
        ),
        "PhysicalDeltaY=inf",
    ),
    (
        "pixel-spacing-inf",
        lambda p: H.rewrite(
            "US1_UNCR.dcm", p, lambda ds: setattr(ds, "PixelSpacing", [float("inf"), 0.2])
        ),
        "PixelSpacing",
    ),
    (
        "zero-tissue-region-plus-doppler",
        lambda p: H.rewrite(
            "OBXXXX1A.dcm",
            p,
            H.set_regions(
                H.region(1, 1, (3, 3), (0.0, 0.0)),
                H.region(3, 1, (3, 3), (0.5, 0.5), (0, 0, 99, 99)),
            ),
        ),
        "SequenceOfUltrasoundRegions[0] (B-mode tissue): PhysicalDeltaX=0.0",
    ),
    (
        "tissue-region-units-seconds",
        lambda p: H.rewrite("OBXXXX1A.dcm", p, H.set_regions(H.region(1, 1, (4, 3), (0.02, 0.02)))),
        "physical units 4/3, expected 3/3 (cm)",
    ),
    (
        "regions-conflict-pixel-spacing",
        lambda p: H.rewrite("OBXXXX1A.dcm", p, lambda ds: setattr(ds, "PixelSpacing", [0.5, 0.5])),
        "conflicting calibration: SequenceOfUltrasoundRegions gives 0.2623",
    ),
    ("deflate-label-on-plain-data", lambda p: H.mislabel_deflate("OBXXXX1A.dcm", p), "not deflate"),
    ("unknown-transfer-syntax", lambda p: H.relabel("OBXXXX1A.dcm", p, "1.2.3.4.5"), "1.2.3.4.5"),
    (
        "jpeg-label-on-native-data",
        lambda p: H.relabel("OBXXXX1A.dcm", p, "1.2.840.10008.1.2.4.50"),
        "malformed encapsulated Pixel Data",
    ),
]


@pytest.mark.parametrize(("name", "make", "says"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_header_is_one_input_error(
    tmp_path: Path, name: str, make: Maker, says: str
) -> None:
    p = make(tmp_path / f"{name}.dcm")
    with pytest.raises(InputError) as ei:
        src = DicomSource(p)
        list(src)  # a header that passes must also decode
    msg = str(ei.value)
    assert says in msg
    assert "\n" not in msg and str(p) in msg


@pytest.mark.parametrize(
    "name", ["frames-1e8-native", "delta-x-1e9-cm", "deflate-label-on-plain-data"]
)
def test_cli_prints_one_line_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    make = next(m for n, m, _ in HOSTILE if n == name)
    p = make(tmp_path / "x.dcm")
    rc = main(["inspect", str(p)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("dgs-edge: error: ") and "Traceback" not in err


def test_doppler_region_is_never_a_calibration(tmp_path: Path) -> None:
    """A Doppler region in cm (5 mm/px) alone: no calibration at all, so no mm measurement."""
    p = H.rewrite(
        "OBXXXX1A.dcm", tmp_path / "d.dcm", H.set_regions(H.region(3, 1, (3, 3), (0.5, 0.5)))
    )
    src = DicomSource(p)
    assert src.info.spacing_mm is None and src.info.spacing_origin is None


def test_largest_valid_tissue_region_wins_and_doppler_ignored(tmp_path: Path) -> None:
    p = H.rewrite(
        "OBXXXX1A.dcm",
        tmp_path / "dual.dcm",
        H.set_regions(
            H.region(2, 1, (3, 3), (0.05, 0.05)),  # colour flow overlay: never calibrates
            H.region(1, 1, (3, 3), (0.03, 0.03), (0, 0, 399, 299)),
            H.region(1, 1, (3, 3), (0.02, 0.02), (400, 0, 799, 599)),
        ),
    )
    src = DicomSource(p)
    assert src.info.spacing_mm == pytest.approx((0.2, 0.2))
    assert src.info.spacing_origin == "us-regions"


def test_agreeing_pixel_spacing_is_not_a_conflict(tmp_path: Path) -> None:
    p = H.rewrite(
        "OBXXXX1A.dcm",
        tmp_path / "ok.dcm",
        lambda ds: setattr(ds, "PixelSpacing", [0.2623, 0.2623]),
    )
    assert DicomSource(p).info.spacing_mm == pytest.approx((0.26228787, 0.26228787))


def test_uncalibrated_region_is_skipped_for_pixel_spacing(tmp_path: Path) -> None:
    p = H.rewrite(
        "OBXXXX1A.dcm",
        tmp_path / "ps.dcm",
        lambda ds: (
            H.set_regions(H.region(1, 1, (0, 0), (0.0, 0.0)))(ds),
            setattr(ds, "PixelSpacing", [0.3, 0.25]),
        ),
    )
    src = DicomSource(p)
    assert (
        src.info.spacing_mm == pytest.approx((0.25, 0.3))
        and src.info.spacing_origin == "pixel-spacing"
    )


def test_real_deflated_file_decodes_like_the_original(tmp_path: Path) -> None:
    import numpy as np

    p = H.deflated("OBXXXX1A.dcm", tmp_path / "defl.dcm")
    a = [f.pixels for f in DicomSource(p)]
    b = [f.pixels for f in DicomSource(H.vendor("OBXXXX1A.dcm"))]
    assert len(a) == len(b) == 1 and np.array_equal(a[0], b[0])


def test_deflate_bomb_refused_within_budget(tmp_path: Path) -> None:
    p = H.deflated("OBXXXX1A.dcm", tmp_path / "defl.dcm")
    small = DicomBudget(max_frame_bytes=100_000)  # < the 480 kB inflated dataset
    with pytest.raises(InputError, match="inflates past"):
        DicomSource(p, budget=small)


def test_frame_times_ignore_malformed_values(tmp_path: Path) -> None:
    """FrameTime 'NaN' and CineRate 'abc' (an IS that pydicom cannot even convert)."""
    p = H.rewrite(
        "OBXXXX1A_2frame.dcm",
        tmp_path / "ft.dcm",
        lambda ds: (
            setattr(ds, "FrameTime", "NaN"),
            ds.add_new(0x00180040, "LO", "abc"),  # CineRate, re-labelled IS below
            setattr(ds, "AcquisitionDateTime", "2024"),
        ),
    )
    raw = p.read_bytes()
    assert raw.count(b"\x18\x00\x40\x00LO") == 1
    p.write_bytes(raw.replace(b"\x18\x00\x40\x00LO", b"\x18\x00\x40\x00IS"))
    src = DicomSource(p, t0=10.0)
    assert src.times == [10.0, 10.0] and src.info.fps_hz is None


def test_calibration_error_names_the_source_for_us_calibration() -> None:
    import pydicom

    ds = pydicom.Dataset()
    ds.SequenceOfUltrasoundRegions = [H.region(1, 1, (3, 3), (float("nan"), 0.02))]
    with pytest.raises(InputError, match=r"here: SequenceOfUltrasoundRegions\[0\]"):
        us_calibration(ds, "here")


def largest_frame(path: Path, rle: bool = False) -> Path:
    """One frame of exactly the frame budget: 8192 x 4096 at 16 bits = 64 MiB."""
    return big_frame(path, "rle16" if rle else "native16")


#: Frames at the limits of DicomBudget: 64 MiB for the direct paths (grey/RGB, native/RLE),
#: 32 MiB (max_decoder_frame_bytes) for frames pydicom's codec plugins decode.
BIG_FRAMES = {
    "native16": "largest allowed frame, native grey (8192x4096x16 bit = 64 MiB)",
    "rle16": "largest allowed frame, RLE grey 16 bit (64 MiB)",
    "rgb": "largest allowed frame, native RGB (8192x2730x3 = 64 MiB)",
    "rgb_rle": "largest allowed frame, RLE RGB (64 MiB)",
    "jls32": "largest codec frame, JPEG-LS 16 bit (4096x4096 = 32 MiB)",
    "jpeg32": "largest codec frame, JPEG baseline YBR_FULL_422 (4096x2730x3 = 32 MiB)",
    "j2k32": "largest codec frame, JPEG 2000 lossless 16 bit (32 MiB)",
    "jls64": "JPEG-LS frame of 64 MiB (over the codec limit)",
}


def big_frame(path: Path, kind: str) -> Path:
    """A one-frame file of `kind` (see BIG_FRAMES): ramps, so every codec has real work."""
    import io

    import numpy as np
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        JPEGLSLossless,
        RLELossless,
        generate_uid,
    )

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "US"
    if kind in ("rgb", "rgb_rle"):
        rgb = (np.arange(8192 * 2730 * 3, dtype=np.uint32) % 251).astype(np.uint8)
        ds.set_pixel_data(rgb.reshape(8192, 2730, 3), "RGB", 8)
    elif kind == "jpeg32":
        rgb = ((np.arange(4096 * 2730 * 3, dtype=np.uint32) * 7) % 251).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb.reshape(4096, 2730, 3)).save(buf, "JPEG", quality=90)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.Rows, ds.Columns, ds.SamplesPerPixel = 4096, 2730, 3
        ds.PhotometricInterpretation, ds.PlanarConfiguration = "YBR_FULL_422", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
    else:
        rows = 4096 if kind.endswith("32") else 8192
        ramp = (np.arange(rows * 4096, dtype=np.uint32) % 4096).astype(np.uint16)
        ds.set_pixel_data(ramp.reshape(rows, 4096), "MONOCHROME2", 12)
    codec = {"rle16": RLELossless, "rgb_rle": RLELossless, "jls32": JPEGLSLossless,
             "jls64": JPEGLSLossless, "j2k32": JPEG2000Lossless}.get(kind)  # fmt: skip
    if codec is not None:
        ds.compress(codec)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_peak_memory_within_documented_bound(tmp_path: Path) -> None:
    """Adversarial inputs, the largest real cine and frames at the limits of the budget,
    decoded in a child: tracemalloc peak per input and peak resident-set growth (VmHWM) stay
    under the documented bound (2 x the 64 MiB frame budget); hostile headers cost < 2 MiB;
    the 120-frame cine (110 MB decoded as a whole) stays near a few frames (lazy decoding);
    a codec frame over its 32 MiB limit is refused before decoding."""
    kinds = ["native16", "rle16", "rgb", "jls32", "jls64"]
    paths = [str(make(tmp_path / f"{name}.dcm")) for name, make, _ in HOSTILE]
    paths.append(str(H.vendor("color3d_jpeg_baseline.dcm")))
    paths += [str(big_frame(tmp_path / f"{k}.dcm", k)) for k in kinds]
    res = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_memory_child.py")), *paths],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == len(paths)
    bound = DEFAULT_BUDGET.peak_bytes
    assert bound == 2 * DEFAULT_BUDGET.max_frame_bytes
    for r in rows:
        assert r["traced_peak"] < bound, r
        assert r["rss_growth"] < bound, r
    assert all(r["traced_peak"] < 2 << 20 for r in rows[: len(HOSTILE)])
    assert all(r["outcome"].startswith("InputError") for r in rows[: len(HOSTILE)])
    cine = rows[len(HOSTILE)]
    big = dict(zip(kinds, rows[len(HOSTILE) + 1 :], strict=True))
    assert cine["outcome"] == "ok: 120 frames"
    one_frame = 480 * 640 * 3
    # The whole cine decoded at once would be 120 frames (110 MB); lazily it is a few frames
    # plus the compressed bytes pydicom buffers.
    assert cine["traced_peak"] < 16 * one_frame, cine
    for k in ("native16", "rle16", "rgb"):  # read straight into the frame: <= 1.6x
        assert big[k]["outcome"] == "ok: 1 frames", big[k]
        assert big[k]["rss_growth"] < 1.6 * DEFAULT_BUDGET.max_frame_bytes, big[k]
    assert big["jls32"]["outcome"] == "ok: 1 frames"
    assert "over the 32 MiB limit" in big["jls64"]["outcome"], big["jls64"]
    assert big["jls64"]["rss_growth"] < 2 << 20
