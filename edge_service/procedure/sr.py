"""DICOM Structured Report of an injection procedure (highdicom, TID 1500 Measurement
Report in a Comprehensive SR), in the same store-and-forward pipeline as the exam's SR
(edge_service/integration/export.py calls `integration.sr.build_sr`, which hands procedure
results here).

Content: one group for the procedure (minimum tip-nerve distance, estimated total volume,
injection count, qualitative: tip inside the nerve outline, spread at the epineurium) and one
group per injection (estimated volume, tip-calcification and tip-nerve distance, offset from
the calcification), each referencing the cine frame where it started. Codes: DCM Distance
where it applies, else the local scheme 99DGS (docs/integration.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from edge_service.integration.codes import LATERALITY, LOCAL
from edge_service.integration.sr import frame_times_of, wrap_report
from edge_service.integration.uids import make_uid

UCUM = "UCUM"
DISTANCE = Code("121206", "DCM", "Distance")
PROCEDURE = Code("us-guided-ligament-injection", LOCAL, "Ultrasound-guided ligament injection")
SITE = Code("sacrospinous-ligament", LOCAL, "Sacrospinous ligament (calcification)")
YES, NO = Code("373066001", "SCT", "Yes"), Code("373067005", "SCT", "No")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _frame_number(t: float, times: Sequence[float]) -> int | None:
    if not times:
        return None
    j = min(range(len(times)), key=lambda i: abs(times[i] - t))
    return j + 1


def build_procedure_sr(
    cine_path: Path,
    result: Mapping[str, Any],
    *,
    series_uid: str,
    sop_uid: str,
    version: int = 1,
    previous: Sequence[Dataset] = (),
    extra: Mapping[str, Any] | None = None,
    uid_root: str = "2.25",
) -> hd.sr.ComprehensiveSR:
    cine = dcmread(cine_path, stop_before_pixels=True)
    times = frame_times_of(cine_path.parent)
    side = str(result.get("side", ""))
    lat = LATERALITY.get(side)
    site = hd.sr.FindingSite(
        anatomic_location=SITE, laterality=Code(lat[0], "SCT", lat[1]) if lat else None
    )

    def meas(
        name: Code, value: float | None, unit: str, method: Code | None, frames: list[int] | None
    ) -> Any:
        if value is None:
            return None
        src = hd.sr.SourceImageForMeasurement(
            cine.SOPClassUID, cine.SOPInstanceUID, referenced_frame_numbers=frames
        )
        return hd.sr.Measurement(
            name=name, value=value, unit=Code(unit, UCUM, unit), method=method,
            finding_sites=[site], referenced_images=[src],
        )  # fmt: skip

    def group(ident: str, ms: list[Any], qual: list[Any] | None = None) -> Any:
        ms = [m for m in ms if m is not None]
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=hd.UID(make_uid(uid_root)), identifier=ident
            ),
            finding_sites=[site],
            measurements=ms or None,
            qualitative_evaluations=qual or None,
        )

    needle = result.get("needle") or {}
    t_min = needle.get("min_nerve_distance_t")
    fmin = _frame_number(float(t_min), times) if isinstance(t_min, int | float) else None
    findings = result.get("findings") or {}
    overall = group(
        f"procedure {result.get('session_id', '')} v{version}",
        [
            meas(
                DISTANCE,
                _num(needle.get("min_nerve_distance_mm")),
                "mm",
                Code("min-tip-nerve-distance", LOCAL, "Minimum needle tip to nerve distance"),
                [fmin] if fmin else None,
            ),
            meas(
                Code("injected-volume-est", LOCAL, "Injected volume (estimate)"),
                _num(result.get("total_volume_ml_est")),
                "ml",
                None,
                None,
            ),
            meas(
                Code("injection-count", LOCAL, "Injections detected"),
                float(len(result.get("injections") or [])),
                "{count}",
                None,
                None,
            ),
        ],
        [
            hd.sr.QualitativeEvaluation(
                Code("tip-in-nerve", LOCAL, "Needle tip inside the nerve outline"),
                YES if needle.get("entered_nerve") else NO,
            ),
            hd.sr.QualitativeEvaluation(
                Code("spread-at-epineurium", LOCAL, "Injectate spread reached the epineurium"),
                YES if findings.get("spread_reached_epineurium") else NO,
            ),
        ],
    )
    groups = [overall]
    for inj in result.get("injections") or []:
        fn = _frame_number(float(inj["t_start"]), times)
        frames = [fn] if fn else None
        off = inj.get("offset_from_calcification_mm") or [None, None]
        groups.append(
            group(
                f"injection {inj['index']}",
                [
                    meas(
                        Code("injection-volume-est", LOCAL, "Injection volume (estimate)"),
                        _num(inj.get("volume_ml_est")),
                        "ml",
                        None,
                        frames,
                    ),
                    meas(
                        DISTANCE,
                        _num(inj.get("calcification_distance_mm")),
                        "mm",
                        Code("tip-calc-distance", LOCAL, "Tip to calcification"),
                        frames,
                    ),
                    meas(
                        DISTANCE,
                        _num(inj.get("nerve_distance_mm")),
                        "mm",
                        Code("tip-nerve-distance", LOCAL, "Tip to nerve"),
                        frames,
                    ),
                    meas(
                        Code("calc-offset-depth", LOCAL, "Offset from calcification, depth"),
                        _num(off[0]),
                        "mm",
                        None,
                        frames,
                    ),
                    meas(
                        Code("calc-offset-lateral", LOCAL, "Offset from calcification, lateral"),
                        _num(off[1]),
                        "mm",
                        None,
                        frames,
                    ),
                ],
            )
        )
    return wrap_report(
        cine, groups, PROCEDURE, str((result.get("software") or {}).get("locator") or ""),
        series_uid=series_uid, sop_uid=sop_uid, version=version, previous=previous,
        extra=extra, description=f"dgs-edge procedure v{version}",
    )  # fmt: skip
