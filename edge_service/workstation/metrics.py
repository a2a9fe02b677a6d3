"""`/metrics` in the Prometheus text format (no client library needed for a dozen lines)."""

from __future__ import annotations

from typing import Any


def _line(out: list[str], name: str, kind: str, help_: str, samples: list[tuple[str, Any]]) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} {kind}")
    for labels, v in samples:
        if v is None:
            continue
        out.append(f"{name}{labels} {float(v):g}")


def render_metrics(service: Any, fanout: Any = None) -> str:
    t = dict(service.totals)
    act = service.active()
    live = act.live.counters if act is not None and act.live is not None else None
    if live is not None:
        # Totals of finished sessions plus the running one.
        t["frames_acquired"] += live.frames_acquired
        t["frames_detected"] += live.frames_detected
        t["dropped_for_detection"] += live.dropped_for_detection
        t["dropped_by_source"] += live.dropped_by_source
        t["frozen_frames"] += live.frozen_frames
    lc = live.to_dict() if live is not None else {}
    out: list[str] = []
    _line(out, "dgs_frames_acquired_total", "counter", "frames recorded from the probe",
          [("", t["frames_acquired"])])  # fmt: skip
    _line(out, "dgs_frames_detected_total", "counter", "frames the live detector analysed",
          [("", t["frames_detected"])])  # fmt: skip
    _line(out, "dgs_frames_dropped_total", "counter",
          "frames not analysed live (detection: drop-to-latest) or lost by the source",
          [('{reason="detection"}', t["dropped_for_detection"]),
           ('{reason="source"}', t["dropped_by_source"])])  # fmt: skip
    _line(out, "dgs_frames_frozen_total", "counter", "frames identical to the one before",
          [("", t["frozen_frames"])])  # fmt: skip
    _line(out, "dgs_detect_latency_ms", "gauge", "detector latency of the running session",
          [('{quantile="0.5"}', lc.get("detect_ms_p50"))])  # fmt: skip
    _line(out, "dgs_live_lag_ms", "gauge",
          "frame time to overlay published, running session",
          [('{quantile="0.5"}', lc.get("live_lag_ms_p50")),
           ('{quantile="0.95"}', lc.get("live_lag_ms_p95"))])  # fmt: skip
    _line(out, "dgs_sessions_total", "counter", "sessions finished",
          [('{state="done"}', t["sessions_done"]), ('{state="failed"}', t["sessions_failed"])])  # fmt: skip
    _line(out, "dgs_session_acquiring", "gauge", "1 while a session acquires",
          [("", 1 if act is not None else 0)])  # fmt: skip
    _line(out, "dgs_outbox_pending", "gauge", "MQTT messages waiting in the outbox",
          [("", service.outbox_pending())])  # fmt: skip
    free = service.disk_free_mb()
    _line(out, "dgs_disk_free_bytes", "gauge", "free space on the recordings disk",
          [("", None if free is None else free * 1e6)])  # fmt: skip
    link = getattr(act.live.inputs, "link", None) if act is not None and act.live else None
    samples = lost = None
    if link is not None:
        st = link.stats_dict()
        samples = st.get("samples")
        lost = (st.get("decoder") or {}).get("lost_frames")
    _line(out, "dgs_clip_samples_total", "counter", "clip samples received (running session)",
          [("", samples)])  # fmt: skip
    _line(out, "dgs_clip_samples_lost_total", "counter",
          "clip frames lost (sequence gaps, running session)", [("", lost)])  # fmt: skip
    if fanout is not None:
        _line(out, "dgs_live_images_encoded_total", "counter", "live JPEG images sent out",
              [("", fanout.encoded)])  # fmt: skip
    # Hospital integration: PACS forward queue per destination (integration/workstation.py).
    fq = getattr(service, "forward_queue", None)
    if fq is not None:
        st = fq.status()
        for state in ("sent", "pending", "parked"):
            _line(out, f"dgs_dicom_forward_{state}", "gauge", f"DICOM instances {state}, per destination",
                  [(f'{{destination="{d}"}}', v[state]) for d, v in st.items()])  # fmt: skip
    return "\n".join(out) + "\n"
