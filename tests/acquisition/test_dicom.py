"""DICOM ingest: every ultrasound test file of pydicom and pydicom-data, calibration, errors."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file as _get_testdata_file
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from edge_service.acquisition.dicom import DicomSource, frame_offsets_s, us_calibration
from edge_service.acquisition.frame import Roi
from edge_service.errors import InputError

# US Image, US Multi-frame Image and their retired predecessors (PS3.4 B.5).
US_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1",
    "1.2.840.10008.5.1.4.1.1.6",
    "1.2.840.10008.5.1.4.1.1.3.1",
    "1.2.840.10008.5.1.4.1.1.3",
    "1.2.840.10008.5.1.4.1.1.6.2",  # enhanced US volume
}


def _discover_us_files() -> list[str]:
    out = []
    for f in get_testdata_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # some non-US test files are deliberately odd
                ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        except Exception:
            continue
        sop = str(ds.get("SOPClassUID", ""))
        if ds.get("Modality") == "US" or sop in US_SOP_CLASSES:
            out.append(f)
    return sorted(out)


US_FILES = _discover_us_files()


def get_testdata_file(name: str) -> str:
    """Path of a pydicom/pydicom-data test file (typed: the library's return is a union)."""
    return str(_get_testdata_file(name))


def test_discovery_finds_the_vendor_files() -> None:
    names = {Path(f).name for f in US_FILES}
    # pydicom's own + pydicom-data: GE (US1_*), ALOKA, SonoSite, the OB palette series.
    assert len(US_FILES) >= 20
    assert {
        "US1_J2KR.dcm",
        "gdcm-US-ALOKA-16.dcm",
        "OBXXXX1A_rle.dcm",
        "color3d_jpeg_baseline.dcm",
    } <= names


@pytest.mark.parametrize("path", US_FILES, ids=[Path(f).name for f in US_FILES])
def test_every_ultrasound_file_loads(path: str) -> None:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    src = DicomSource(path)
    n = int(ds.get("NumberOfFrames") or 1)
    frames = list(src)
    assert len(frames) == n == src.info.n_frames
    for i, f in enumerate(frames):
        assert f.index == i
        assert f.pixels.dtype == np.uint8 and f.pixels.shape == (ds.Rows, ds.Columns)
    assert frames[0].pixels.std() > 1.0, "decoded an empty image"
    ts = [f.t for f in frames]
    assert ts == sorted(ts)
    spacing, _, _ = us_calibration(ds)
    assert src.info.spacing_mm == spacing
    if src.info.roi is not None:
        r = src.info.roi
        assert 0 <= r.x0 < r.x1 <= ds.Columns and 0 <= r.y0 < r.y1 <= ds.Rows


def _gray(name_or_path: str | Path) -> np.ndarray:
    p = (
        name_or_path
        if isinstance(name_or_path, Path)
        else Path(str(get_testdata_file(name_or_path)))
    )
    return np.stack([f.pixels for f in DicomSource(p)])


@pytest.mark.parametrize(
    ("encoded", "reference"),
    [
        ("US1_J2KR.dcm", "US1_UNCR.dcm"),  # JPEG 2000 lossless vs native
        ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm"),  # RLE vs native, palette colour
        ("OBXXXX1A_expb.dcm", "OBXXXX1A.dcm"),  # big endian vs little endian
        ("OBXXXX1A_rle_2frame.dcm", "OBXXXX1A_2frame.dcm"),
        ("gdcm-US-ALOKA-16_big.dcm", "gdcm-US-ALOKA-16.dcm"),  # 16-bit palette, big endian
    ],
)
def test_lossless_syntaxes_decode_identically(encoded: str, reference: str) -> None:
    assert np.array_equal(_gray(encoded), _gray(reference))


def test_lossy_jpeg2000_close_to_native() -> None:
    a, b = _gray("US1_J2KI.dcm").astype(int), _gray("US1_UNCI.dcm").astype(int)
    assert np.abs(a - b).mean() < 3.0


@pytest.mark.parametrize("name", ["US1_UNCR.dcm", "OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm"])
def test_jpeg_ls_from_independent_encoder(tmp_path: Path, name: str) -> None:
    """dcmtk's dcmcjpls encodes; our pipeline (pyjpegls/CharLS) must decode losslessly."""
    exe = shutil.which("dcmcjpls")
    assert exe, "dcmtk (dcmcjpls) is required: scripts/setup installs it"
    out = tmp_path / "jls.dcm"
    subprocess.run([exe, str(get_testdata_file(name)), str(out)], check=True, timeout=60)
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
    assert np.array_equal(_gray(out), _gray(name))


def test_jpeg_lossless_against_dcmtk_decoder(tmp_path: Path) -> None:
    src = Path(str(get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm")))
    out = tmp_path / "plain.dcm"
    subprocess.run(["dcmdjpeg", str(src), str(out)], check=True, timeout=60)
    assert np.array_equal(_gray(src), _gray(out))


def test_region_spacing_in_mm_and_bounds() -> None:
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"), stop_before_pixels=True)
    reg = ds.SequenceOfUltrasoundRegions[0]
    assert reg.PhysicalUnitsXDirection == 3
    spacing, roi, origin = us_calibration(ds)
    assert origin == "us-regions"
    assert spacing == pytest.approx(
        (float(reg.PhysicalDeltaX) * 10, float(reg.PhysicalDeltaY) * 10)
    )
    assert roi == Roi(
        reg.RegionLocationMinX0,
        reg.RegionLocationMinY0,
        reg.RegionLocationMaxX1 + 1,
        reg.RegionLocationMaxY1 + 1,
    )


def _region(units: int, dtype: int, dx: float, box: tuple[int, int, int, int]) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat = 1 if dtype == 1 else 3
    r.RegionDataType = dtype
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
    r.PhysicalUnitsXDirection = units
    r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX = dx
    r.PhysicalDeltaY = dx
    return r


def test_picks_tissue_region_and_ignores_non_spatial_units() -> None:
    ds = Dataset()
    ds.SequenceOfUltrasoundRegions = Sequence(
        [
            _region(4, 3, 0.01, (0, 300, 400, 399)),  # spectral Doppler: seconds, not space
            _region(3, 1, 0.02, (10, 20, 309, 219)),  # B-mode tissue in cm
        ]
    )
    spacing, roi, _ = us_calibration(ds)
    assert spacing == pytest.approx((0.2, 0.2))
    assert roi == Roi(10, 20, 310, 220)
    ds.SequenceOfUltrasoundRegions = Sequence([_region(4, 3, 0.01, (0, 0, 10, 10))])
    assert us_calibration(ds) == (None, None, None)


def test_frame_time_vector_and_frame_time() -> None:
    ds = Dataset()
    ds.FrameTimeVector = ["0", "20", "30", "50"]
    offs, fps = frame_offsets_s(ds, 4)
    assert offs == pytest.approx([0.0, 0.02, 0.05, 0.1]) and fps == pytest.approx(30.0)
    ds = Dataset()
    ds.FrameTime = "40"
    offs, fps = frame_offsets_s(ds, 3)
    assert offs == pytest.approx([0.0, 0.04, 0.08]) and fps == pytest.approx(25.0)
    assert frame_offsets_s(Dataset(), 2) == ([0.0, 0.0], None)


def test_multiframe_times_from_file() -> None:
    src = DicomSource(get_testdata_file("examples_ybr_color.dcm"), t0=100.0)
    ts = [f.t for f in src]
    assert ts[0] == 100.0
    assert np.allclose(np.diff(ts), float(src.dataset.FrameTime) / 1000)


def test_no_spacing_refused_unless_user_gives_it() -> None:
    path = get_testdata_file("US1_UNCR.dcm")
    assert DicomSource(path).info.spacing_mm is None
    assert next(iter(DicomSource(path))).spacing_mm is None
    user = DicomSource(path, spacing_mm=(0.3, 0.3))
    assert user.info.spacing_mm == (0.3, 0.3) and user.info.spacing_origin == "user"
    # A user value that contradicts the file's own calibration is an error naming both;
    # agreeing within 1 % keeps the file's; spacing_override makes the user's win.
    ob = get_testdata_file("OBXXXX1A.dcm")
    with pytest.raises(InputError, match=r"--spacing 1.5,1.5 contradicts .* 0.2623,0.2623"):
        DicomSource(ob, spacing_mm=(1.5, 1.5))
    own = DicomSource(ob, spacing_mm=(0.263, 0.263))
    assert own.info.spacing_mm == pytest.approx((0.26228787, 0.26228787))
    assert own.info.spacing_origin == "us-regions"
    forced = DicomSource(ob, spacing_mm=(1.5, 1.5), spacing_override=True)
    assert forced.info.spacing_mm == (1.5, 1.5) and forced.info.spacing_origin == "user"
    assert next(iter(forced)).spacing_mm == (1.5, 1.5)
    with pytest.raises(InputError, match="positive"):
        DicomSource(path, spacing_mm=(0.0, 0.3))


def test_not_dicom(tmp_path: Path) -> None:
    p = tmp_path / "x.dcm"
    p.write_bytes(b"this is not a DICOM file at all" * 10)
    with pytest.raises(InputError, match="not a DICOM file"):
        DicomSource(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        DicomSource(tmp_path / "missing.dcm")


@pytest.mark.parametrize("keep", [400, 3000])
def test_truncated_header(tmp_path: Path, keep: int) -> None:
    p = tmp_path / "t.dcm"
    p.write_bytes(Path(str(get_testdata_file("OBXXXX1A.dcm"))).read_bytes()[:keep])
    with pytest.raises(InputError, match="DICOM"):
        DicomSource(p)


@pytest.mark.parametrize(
    "name", ["OBXXXX1A.dcm", "color3d_jpeg_baseline.dcm", "OBXXXX1A_rle_2frame.dcm"]
)
def test_truncated_pixel_data(tmp_path: Path, name: str) -> None:
    data = Path(str(get_testdata_file(name))).read_bytes()
    p = tmp_path / "t.dcm"
    p.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InputError):
        src = DicomSource(p)
        list(src)


def test_missing_pixel_data(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"))
    del ds.PixelData
    p = tmp_path / "nopix.dcm"
    ds.save_as(p)
    with pytest.raises(InputError, match="no pixel data"):
        DicomSource(p)


def test_monochrome1_16bit_scaled_and_inverted(tmp_path: Path) -> None:
    """No US test file is MONOCHROME1 or >8-bit gray, so write one with pydicom."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    arr = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)  # 12-bit values
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.set_pixel_data(arr, "MONOCHROME1", 12)
    p = tmp_path / "m1.dcm"
    ds.save_as(p, enforce_file_format=True)
    gray = next(iter(DicomSource(p))).pixels
    assert np.array_equal(gray, 255 - (arr >> 4).astype(np.uint8))


def test_native_ybr_full_converted_like_rgb(tmp_path: Path) -> None:
    """Uncompressed YBR_FULL (some vendors' native colour) must give the same gray as RGB."""
    from pydicom.pixels import convert_color_space

    ds = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm"))
    ds.PixelData = convert_color_space(ds.pixel_array, "RGB", "YBR_FULL").tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    p = tmp_path / "ybr.dcm"
    ds.save_as(p)
    diff = np.abs(_gray(p).astype(int) - _gray("US1_UNCR.dcm").astype(int))
    assert diff.max() <= 1


_DIRECT_FILES = [
    "OBXXXX1A.dcm",  # native 8-bit palette
    "OBXXXX1A_2frame.dcm",
    "OBXXXX1A_rle_2frame.dcm",  # RLE 8-bit palette
    "emri_small.dcm",  # native 16-bit, 10 frames
    "emri_small_RLE.dcm",  # RLE 16-bit
    "gdcm-US-ALOKA-16.dcm",  # implicit VR, 16-bit ultrasound
    "SC_rgb.dcm",  # native RGB
    "SC_rgb_rle_2frame.dcm",  # RLE RGB
]


@pytest.mark.parametrize("lean", [False, True], ids=["plugin", "plane-by-plane"])
@pytest.mark.parametrize("name", _DIRECT_FILES)
def test_direct_frames_equal_pydicom(
    name: str, lean: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy-free native/RLE readers (dicomframes) give exactly pydicom's arrays, also
    when every RLE frame takes the plane-by-plane path meant for frames near the budget."""
    from edge_service.acquisition import dicomframes
    from edge_service.acquisition.dicomguard import check_dicom_pixels

    monkeypatch.setattr(dicomframes, "LEAN_RLE_BYTES", 0 if lean else 16 << 20)
    path = str(get_testdata_file(name))
    ds = pydicom.dcmread(path, defer_size=64)  # deferred like a large file
    frames = dicomframes.direct_frames(path, ds, check_dicom_pixels(path, ds))
    assert frames is not None, "this layout should take the direct path"
    mine = list(frames)
    ref = list(pydicom.pixels.iter_pixels(path))
    assert len(mine) == len(ref)
    for a, b in zip(mine, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("name", ["US1_J2KR.dcm", "color3d_jpeg_baseline.dcm", "MR_small.dcm"])
def test_other_layouts_go_through_pydicom(name: str) -> None:
    """Codec-compressed, YBR and signed data are not read directly (None)."""
    from edge_service.acquisition.dicomframes import direct_frames
    from edge_service.acquisition.dicomguard import check_dicom_pixels

    path = str(get_testdata_file(name))
    ds = pydicom.dcmread(path, defer_size=64)
    assert direct_frames(path, ds, check_dicom_pixels(path, ds)) is None


def test_ybr_frames_converted_like_pydicom() -> None:
    """YBR_FULL_422 JPEG: pydicom's own colour conversion, done in blocks of rows."""
    from edge_service.acquisition.colour import frame_to_gray

    path = get_testdata_file("examples_ybr_color.dcm")
    ref = [frame_to_gray(a, "RGB", 8) for a in pydicom.pixels.iter_pixels(path)]
    mine = [f.pixels for f in DicomSource(path).frames()]
    assert len(mine) == len(ref) and all(
        np.array_equal(a, b) for a, b in zip(mine, ref, strict=True)
    )


def _damaged_rle(tmp_path: Path, damage: str) -> Path:
    """A copy of a two-frame 8-bit RLE file with its second frame damaged."""
    import struct

    data = bytearray(Path(get_testdata_file("OBXXXX1A_rle_2frame.dcm")).read_bytes())
    first = data.find(b"\xfe\xff\x00\xe0", data.find(b"\xe0\x7f\x10\x00") + 12)  # the BOT
    bot_len = struct.unpack_from("<L", data, first + 4)[0]
    f1 = first + 8 + bot_len  # item header of frame 0
    f2 = f1 + 8 + struct.unpack_from("<L", data, f1 + 4)[0]  # item header of frame 1
    hdr = f2 + 8  # frame 1's RLE header
    if damage == "segments":
        struct.pack_into("<L", data, hdr, 2)  # claims 2 segments for 8-bit samples
    elif damage == "offset":
        struct.pack_into("<L", data, hdr + 4, 10_000_000)  # segment past the frame
    elif damage == "runs":
        seg = hdr + struct.unpack_from("<L", data, hdr + 4)[0]
        data[seg : f2 + 8 + struct.unpack_from("<L", data, f2 + 4)[0]] = b"\x82\x00" * (
            (f2 + 8 + struct.unpack_from("<L", data, f2 + 4)[0] - seg) // 2
        )  # runs of 127 zeros: overshoot the plane
    out = tmp_path / f"{damage}.dcm"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("segments", "2 RLE segments for 1 x 1-byte samples"),
        ("offset", "outside the frame"),
        ("runs", "past the end of the segment"),
    ],
)
def test_damaged_rle_frame_is_one_line(
    tmp_path: Path, damage: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plane-by-plane RLE reader refuses damaged frames with one InputError line."""
    from edge_service.acquisition import dicomframes
    from edge_service.acquisition.dicomguard import check_dicom_pixels

    monkeypatch.setattr(dicomframes, "LEAN_RLE_BYTES", 0)
    path = str(_damaged_rle(tmp_path, damage))
    ds = pydicom.dcmread(path, defer_size=64)
    frames = dicomframes.direct_frames(path, ds, check_dicom_pixels(path, ds))
    assert frames is not None
    assert next(frames).shape == (ds.Rows, ds.Columns)  # frame 0 is intact
    with pytest.raises(InputError, match=says) as exc:
        next(frames)
    assert "\n" not in str(exc.value) and path in str(exc.value)
