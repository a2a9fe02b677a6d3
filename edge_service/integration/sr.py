"""DICOM Structured Report of a session's measurements (highdicom, TID 1500 Measurement
Report in a Comprehensive SR), referencing the cine's SOP instance and the frames measured.

A correction (result version n+1) is a new SR instance whose Predecessor Documents Sequence
names the earlier SR (`previous`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from edge_service import __version__
from edge_service.integration.codes import LATERALITY, LOCAL, MEASUREMENTS, PROCEDURE, SITE
from edge_service.integration.order import order_of
from edge_service.integration.uids import make_uid

UCUM = "UCUM"


def _value(result: Mapping[str, Any], path: str) -> float | None:
    cur: Any = result
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur or cur.get("state") == "undetermined":
            return None
        cur = cur[part]
    if isinstance(cur, bool) or not isinstance(cur, int | float):
        return None
    return float(cur)


def measured_frames(result: Mapping[str, Any], frame_times: Sequence[float]) -> list[int]:
    """1-based cine frame numbers the measurements came from: the frames of the result's
    per-frame series with a nerve measurement, matched to the cine by time."""
    series = result.get("series")
    if not isinstance(series, Mapping) or not frame_times:
        return []
    t0, ts, ap = series.get("t0"), series.get("t_s") or [], series.get("nerve_ap_mm") or []
    if not isinstance(t0, int | float):
        return []
    import bisect

    out: set[int] = set()
    for t, v in zip(ts, ap, strict=False):
        if v is None or not isinstance(t, int | float):
            continue
        tt = t0 + t
        i = bisect.bisect_left(frame_times, tt)
        cands = [j for j in (i - 1, i) if 0 <= j < len(frame_times)]
        j = min(cands, key=lambda j: abs(frame_times[j] - tt))
        out.add(j + 1)
    return sorted(out)


def frame_times_of(recording: Path) -> list[float]:
    p = recording / "frames.csv"
    if not p.exists():
        return []
    times = []
    for line in p.read_text().splitlines()[1:]:
        parts = line.split(",")
        if len(parts) == 2:
            try:
                times.append(float(parts[1]))
            except ValueError:
                continue
    return times


def _code(c: tuple[str, str, str]) -> Code:
    return Code(c[1], c[0], c[2])


def build_sr(
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
    if result.get("schema") == "dgs.procedure-result/1":  # injection: edge_service/procedure/sr.py
        from edge_service.procedure.sr import build_procedure_sr

        return build_procedure_sr(cine_path, result, series_uid=series_uid, sop_uid=sop_uid,
                                  version=version, previous=previous, extra=extra,
                                  uid_root=uid_root)  # fmt: skip
    cine = dcmread(cine_path, stop_before_pixels=True)
    frames = measured_frames(result, frame_times_of(cine_path.parent))
    source = hd.sr.SourceImageForMeasurement(
        cine.SOPClassUID, cine.SOPInstanceUID, referenced_frame_numbers=frames or None
    )
    side = str(result.get("side", ""))
    lat = LATERALITY.get(side)
    site = hd.sr.FindingSite(
        anatomic_location=_code(SITE),
        laterality=Code(lat[0], "SCT", lat[1]) if lat else None,
    )
    measurements = []
    for path, c in MEASUREMENTS.items():
        v = _value(result, path)
        if v is None:
            continue
        name = _code(c.std) if c.std else Code(c.local, LOCAL, c.display)
        # A generic standard quantity (e.g. Diameter) is made specific by a derivation-free
        # local "method" naming what was measured, so two Diameters stay distinguishable.
        method = Code(c.local, LOCAL, c.display) if c.std else None
        unit = Code(c.unit, UCUM, c.unit)
        measurements.append(
            hd.sr.Measurement(
                name=name,
                value=v,
                unit=unit,
                method=method,
                finding_sites=[site],
                referenced_images=[source],
            )
        )
    qualitative = []
    for path, local, display in (
        ("calcification.present", "calc-present", "Calcification present"),
        ("gliding.restricted", "gliding-restricted", "Nerve gliding restricted"),
    ):
        section, key = path.split(".")
        sec = result.get(section)
        if isinstance(sec, Mapping) and sec.get("state") != "undetermined":
            b = sec.get(key)
            if isinstance(b, bool):
                yes_no = Code("373066001", "SCT", "Yes") if b else Code("373067005", "SCT", "No")
                qualitative.append(hd.sr.QualitativeEvaluation(Code(local, LOCAL, display), yes_no))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            # Under the configured root, not highdicom's own.
            uid=hd.UID(make_uid(uid_root)),
            identifier=f"session {result.get('session_id', '')} v{version}",
        ),
        finding_sites=[site],
        measurements=measurements or None,
        qualitative_evaluations=qualitative or None,
    )
    model_name = str(((result.get("software") or {}).get("model") or {}).get("name", ""))
    return wrap_report(
        cine, [group], _code(PROCEDURE), model_name,
        series_uid=series_uid, sop_uid=sop_uid, version=version, previous=previous,
        extra=extra, description=f"dgs-edge measurements v{version}",
    )  # fmt: skip


def wrap_report(
    cine: Dataset,
    groups: Sequence[hd.sr.MeasurementsAndQualitativeEvaluations],
    procedure: Code,
    model_name: str,
    *,
    series_uid: str,
    sop_uid: str,
    version: int,
    previous: Sequence[Dataset],
    extra: Mapping[str, Any] | None,
    description: str,
) -> hd.sr.ComprehensiveSR:
    """The TID 1500 Measurement Report around `groups` in a Comprehensive SR referencing the
    cine, with this device as observer and the order's Requested Procedure items; shared by
    the exam's and the procedure's SR so both carry the same header a PACS files them by."""
    device = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=sop_uid, name="dgs-edge", manufacturer_name="dgs-edge",
            model_name=model_name[:64] or None,
        ),
    )  # fmt: skip
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=procedure,
        imaging_measurements=list(groups),
    )
    requested = requested_procedures(cine, extra)
    sr = hd.sr.ComprehensiveSR(
        evidence=[cine],
        content=report,
        series_instance_uid=series_uid,
        series_number=100 + version,
        sop_instance_uid=sop_uid,
        instance_number=version,
        manufacturer="dgs-edge",
        is_complete=True,
        is_final=True,
        requested_procedures=requested or None,
        previous_versions=list(previous) or None,
        series_description=description,
        software_versions=__version__,
    )
    # highdicom copies patient/study from the cine; the accession number as well.
    sr.AccessionNumber = cine.get("AccessionNumber", "")
    return sr


def requested_procedures(cine: Dataset, extra: Mapping[str, Any] | None) -> list[Dataset]:
    """The SR's Requested Procedure items from the session's order (none without an order);
    shared by the exam's and the procedure's SR."""
    o = order_of(extra)
    if o is None:
        return []
    rq = Dataset()
    rq.AccessionNumber = o.accession_number
    rq.StudyInstanceUID = cine.StudyInstanceUID
    rq.RequestedProcedureID = o.requested_procedure_id or ""
    rq.RequestedProcedureDescription = o.requested_procedure or ""
    rq.RequestedProcedureCodeSequence = []
    rq.ReferencedStudySequence = []
    rq.PlacerOrderNumberImagingServiceRequest = ""
    rq.FillerOrderNumberImagingServiceRequest = ""
    return [rq]
