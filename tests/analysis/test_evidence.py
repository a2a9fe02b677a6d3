"""Evidence gates on a real simulated recording (shipped ONNX model): clip-probe lag
corrected or refused, clip lost, constant or shuffled angles, view-rejected frames, and
every threshold of `[analysis.evidence]` honoured."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edge_service.analysis.result import validate
from edge_service.analysis.session import analyze_session
from edge_service.analysis.settings import AnalysisSettings, EvidenceSettings, GlidingRule
from edge_service.phantom import simulate_session

pytestmark = pytest.mark.sim


class CachedDetector:
    """The shipped detector, each frame detected once for all the variants of a recording
    (the variants differ only in imu.jsonl, so the images and detections are the same)."""

    def __init__(self) -> None:
        from edge_service.detector import Detector  # type: ignore[attr-defined]

        self._det = Detector.load()
        self._cache: dict[int, Any] = {}

    def detect(self, frame: Any) -> Any:
        if frame.index not in self._cache:
            self._cache[frame.index] = self._det.detect(frame)
        return self._cache[frame.index]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._det, name)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("evidence") / "free"
    return simulate_session(
        d, seed=311, gliding="free", nerve="normal", calcification="yes", fps=5.0
    )


@pytest.fixture(scope="module")
def detector() -> CachedDetector:
    return CachedDetector()


def _imu(d: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (d / "imu.jsonl").read_text().splitlines() if x.strip()]


def _variant(base: Path, tmp: Path, name: str, rows: list[dict[str, Any]] | None) -> Path:
    """A copy of the recording (cine.dcm linked, not copied) with another imu.jsonl."""
    d = tmp / name
    d.mkdir()
    for f in ("session.json", "frames.csv", "truth.json"):
        (d / f).write_bytes((base / f).read_bytes())
    (d / "cine.dcm").symlink_to(base / "cine.dcm")
    rows = _imu(base) if rows is None else rows
    (d / "imu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _analyse(d: Path, det: CachedDetector, settings: AnalysisSettings | None = None) -> dict:
    res = analyze_session(d, detector=det, settings=settings, write=False)
    validate(res)
    assert res["schema"] == "dgs.session-result/1.1"
    return res


@pytest.fixture(scope="module")
def reference(base: Path, detector: CachedDetector, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return _analyse(_variant(base, tmp_path_factory.mktemp("ref"), "ref", None), detector)


def test_reference_session_is_measured_with_intervals(reference: dict) -> None:
    g = reference["gliding"]
    assert g["state"] == "measured" and g["reason"] is None and g["restricted"] is False
    assert g["excursion_mm"] > 0 and g["excursion_direction"] in ("lateral", "medial")
    lo, hi = g["excursion_ci_mm"]
    assert lo <= g["excursion_mm"] <= hi and hi - lo < 1.0
    slo, shi = g["per_10deg_ir_ci_mm"]
    assert slo <= g["per_10deg_ir_mm"] <= shi
    assert abs(g["lag"]["lag_s"]) <= 0.1 and g["lag"]["correlation"] > 0.9
    assert reference["nerve"]["state"] == "measured"
    assert reference["calcification"]["state"] == "measured"
    assert reference["calcification"]["present"] is True
    assert reference["calcification"]["confidence"] > 0.8
    assert reference["software"]["training_data"] == "simulated phantom only"
    assert reference["software"]["clinical_validation"] == "not clinically validated"
    q = reference["data_quality"]
    assert q["frames_total"] == q["frames_valid"] and q["frames_view_rejected"] == 0
    assert q["imu_coverage"] > 0.95


def test_small_lag_is_corrected_and_the_call_unchanged(
    base: Path, detector: CachedDetector, reference: dict, tmp_path: Path
) -> None:
    rows = [dict(r, t=r["t"] + 0.2) for r in _imu(base)]  # angles stamped 0.2 s late
    res = _analyse(_variant(base, tmp_path, "lag02", rows), detector)
    g = res["gliding"]
    assert g["state"] == "measured" and g["lag"]["applied"] is True
    assert g["lag"]["lag_s"] == pytest.approx(0.2 + reference["gliding"]["lag"]["lag_s"], abs=0.06)
    assert res["data_quality"]["lag_s"] == g["lag"]["lag_s"]
    assert g["restricted"] is reference["gliding"]["restricted"]
    assert g["excursion_mm"] == pytest.approx(reference["gliding"]["excursion_mm"], abs=0.15)
    assert any("re-aligned" in f for f in res["findings"])


def test_angles_3s_out_of_step_are_refused(
    base: Path, detector: CachedDetector, tmp_path: Path
) -> None:
    rows = [dict(r, t=r["t"] + 3.0) for r in _imu(base)]
    res = _analyse(_variant(base, tmp_path, "lag3", rows), detector)
    g = res["gliding"]
    assert g["restricted"] is None and g["state"] == "undetermined"
    assert "angles_images_inconsistent" in g["reasons"]
    assert g["excursion_mm"] is None and g["per_10deg_ir_mm"] is None
    assert res["data_quality"]["lag_s"] is None


def test_shuffled_angles_are_refused(base: Path, detector: CachedDetector, tmp_path: Path) -> None:
    rows = _imu(base)
    angles = [(r["flexion_deg"], r["adduction_deg"], r["rotation_deg"]) for r in rows]
    random.Random(7).shuffle(angles)
    rows = [
        dict(r, flexion_deg=a[0], adduction_deg=a[1], rotation_deg=a[2])
        for r, a in zip(rows, angles, strict=True)
    ]
    res = _analyse(_variant(base, tmp_path, "shuffled", rows), detector)
    g = res["gliding"]
    assert g["restricted"] is None and g["state"] == "undetermined"
    assert set(g["reasons"]) & {"angles_images_inconsistent", "no_manoeuvre", "poor_fit"}


def test_clip_unplugged_after_8s_is_clip_lost(
    base: Path, detector: CachedDetector, tmp_path: Path
) -> None:
    rows = _imu(base)
    rows = [r for r in rows if r["t"] <= rows[0]["t"] + 8.0]
    res = _analyse(_variant(base, tmp_path, "unplugged", rows), detector)
    g = res["gliding"]
    assert g["restricted"] is None and g["reason"] == "clip_lost"
    assert res["data_quality"]["imu_coverage"] < 0.5
    assert any("Gliding could not be judged" in f and "stopped" in f for f in res["findings"])


def test_clip_reboot_is_seen_in_the_sample_counter(
    base: Path, detector: CachedDetector, tmp_path: Path
) -> None:
    rows = _imu(base)
    half = len(rows) // 2
    rows = rows[:half] + [dict(r, seq=i) for i, r in enumerate(rows[half:])]
    res = _analyse(_variant(base, tmp_path, "reboot", rows), detector)
    assert res["gliding"]["restricted"] is None and "clip_rebooted" in res["gliding"]["reasons"]
    assert res["data_quality"]["imu_seq_resets"] == 1


def test_constant_angles_find_no_manoeuvre(
    base: Path, detector: CachedDetector, tmp_path: Path
) -> None:
    rows = [dict(r, flexion_deg=10.0, adduction_deg=2.0, rotation_deg=5.0) for r in _imu(base)]
    res = _analyse(_variant(base, tmp_path, "constant", rows), detector)
    g = res["gliding"]
    assert g["restricted"] is None and g["reason"] == "no_manoeuvre"
    assert res["maneuvers"] == []


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        (AnalysisSettings(evidence=EvidenceSettings(min_fit_r2=0.999)), "poor_fit"),
        (AnalysisSettings(gliding=GlidingRule(min_ir_range_deg=80.0)), "ir_range_too_small"),
        (
            AnalysisSettings(evidence=EvidenceSettings(min_tracking_quality=0.999)),
            "tracking_quality_low",
        ),
        (
            AnalysisSettings(evidence=EvidenceSettings(min_lag_correlation=0.9999)),
            "angles_images_inconsistent",
        ),
    ],
)
def test_every_threshold_is_honoured(
    base: Path,
    detector: CachedDetector,
    tmp_path: Path,
    settings: AnalysisSettings,
    reason: str,
) -> None:
    res = _analyse(_variant(base, tmp_path, "s", None), detector, settings)
    g = res["gliding"]
    assert g["restricted"] is None and reason in g["reasons"], g["reasons"]
    assert any("could not be judged" in f for f in res["findings"])


def test_short_clip_dropout_is_tolerated_up_to_max_angle_gap(
    base: Path, detector: CachedDetector, tmp_path: Path
) -> None:
    rows = _imu(base)
    t0 = rows[0]["t"]
    rows = [r for r in rows if not (t0 + 20.0 <= r["t"] < t0 + 20.6)]  # 0.6 s without samples
    d = _variant(base, tmp_path, "dropout", rows)
    res = _analyse(d, detector)
    assert res["data_quality"]["imu_longest_gap_s"] == pytest.approx(0.6, abs=0.21)
    assert "clip_lost" not in res["gliding"]["reasons"]
    strict = AnalysisSettings(evidence=EvidenceSettings(max_angle_gap_s=0.3))
    res = _analyse(d, detector, strict)
    assert res["gliding"]["restricted"] is None and res["gliding"]["reason"] == "clip_lost"


class _ViewGate:
    """The trust-detector's view gate, as an attribute on each detection: frames whose
    index is in `rejected` are not a deep-gluteal short-axis view."""

    def __init__(self, det: CachedDetector, rejected: set[int]) -> None:
        self._det, self.rejected = det, rejected

    def detect(self, frame: Any) -> Any:
        d = self._det.detect(frame)
        ok = frame.index not in self.rejected
        return SimpleNamespace(
            nerve=d.nerve,
            calcification=d.calcification,
            model=getattr(d, "model", None),
            view_ok=ok,
            view_score=0.9 if ok else 0.1,
        )


def test_view_rejected_frames_get_no_measurement_and_are_counted(
    base: Path, detector: CachedDetector, tmp_path: Path
) -> None:
    d = _variant(base, tmp_path, "view", None)
    rejected = set(range(0, 160, 10))
    res = _analyse(d, _ViewGate(detector, rejected))  # type: ignore[arg-type]
    q = res["data_quality"]
    assert q["frames_view_rejected"] == len(rejected)
    assert q["frames_valid"] == q["frames_total"] - len(rejected)
    assert res["status"]["analysable"] is True
    ap = res["series"]["nerve_ap_mm"]
    assert all(ap[i] is None for i in rejected)
    assert all(res["series"]["view_ok"][i] is False for i in rejected)


def test_session_of_mostly_wrong_views_is_not_analysable(
    base: Path, detector: CachedDetector, tmp_path: Path
) -> None:
    d = _variant(base, tmp_path, "ood", None)
    res = _analyse(d, _ViewGate(detector, set(range(5, 400))))  # type: ignore[arg-type]
    assert res["status"] == {
        "analysable": False,
        "state": "undetermined",
        "reason": "too_few_valid_frames",
        "reason_text": res["status"]["reason_text"],
    }
    assert "Only 5 of" in res["status"]["reason_text"]
    assert res["nerve"]["ap_diameter_mm"] is None and res["nerve"]["state"] == "undetermined"
    assert res["calcification"]["present"] is None
    assert res["gliding"]["restricted"] is None
    assert res["findings"][0].startswith("Not analysable")


def test_imu_log_out_of_order_is_read_in_time_order_not_a_reboot(
    base: Path, detector: CachedDetector, tmp_path: Path, reference: dict
) -> None:
    rows = _imu(base)
    random.Random(3).shuffle(rows)
    res = _analyse(_variant(base, tmp_path, "unordered", rows), detector)
    g = res["gliding"]
    assert res["data_quality"]["imu_seq_resets"] == 0
    assert g["state"] == "measured" and g["restricted"] is reference["gliding"]["restricted"]
