"""The service's procedure hooks: alarm events to MQTT off the detection thread, and the
follow-up comparison written into a finished injection's result."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

log = logging.getLogger(__name__)

#: alarm fields that go out over MQTT (no image, no patient data)
ALARM_KEYS = (
    "kind",
    "level",
    "message",
    "state",
    "t_raised",
    "t_cleared",
    "frame_t",
    "frame_index",
    "value_mm",
)


class AlarmPublisher:
    def __init__(self, publisher: Any) -> None:
        self.pub = publisher
        self._q: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._t = threading.Thread(target=self._run, name="alarm-mqtt", daemon=True)
        self._t.start()

    def put(self, payload: dict[str, Any]) -> None:
        self._q.put(payload)

    def _run(self) -> None:
        while True:
            p = self._q.get()
            if p is None:
                return
            data = {k: p.get(k) for k in ALARM_KEYS}
            key = f"{p.get('kind')}-{p.get('state')}-{p.get('frame_index')}"
            try:
                # a stable key: an alarm re-sent after a crash is the same message
                self.pub.event(p["id"], "alarm", data, key=key)
            except Exception:  # the page still shows the alarm; the log says MQTT did not
                log.exception("alarm event not queued for MQTT")

    def close(self) -> None:
        self._q.put(None)
        self._t.join(5.0)


def attach_followup(e: Any, sessions: list[Any]) -> None:
    """The previous injection procedure of this patient and side (an earlier order) is the
    baseline; the comparison goes into result.json and the report."""
    from edge_service.analysis.result import write_json_atomic
    from edge_service.procedure.compare import compare_procedures
    from edge_service.procedure.report import write_report

    res = e.result()
    if res is None:
        return
    earlier = [
        o
        for o in sessions
        if o.id != e.id
        and o.protocol == "injection"
        and o.state == "done"
        and o.order.patient_id == e.order.patient_id
        and o.side == e.side
        and o.order.accession_number != e.order.accession_number
        and o.started_t < e.started_t
    ]
    if not earlier:
        return
    base = max(earlier, key=lambda x: x.started_t)
    rb = base.result()
    if rb is None or rb.get("schema") != res.get("schema"):
        return
    res["followup"] = compare_procedures(rb, res)
    write_json_atomic(e.path / "result.json", res)
    pngs = sorted(e.path.glob("keyframe-*.png"), key=lambda p: int(p.stem.split("-")[1]))
    write_report(e.path / "report.html", res, pngs)
    e._result = res
