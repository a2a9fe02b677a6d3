"""The appliance service's long-lived parts, shared by `dgs-edge run` and `dgs-edge recover`:
state-dir lock, detector, publisher with its retained status, recovery of unfinished
sessions, disk floor and retention. `health()` is what a health endpoint reports."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_service.config import AppConfig
from edge_service.errors import BrokerError, ConfigError
from edge_service.recovery import RecoveryReport, StateLock, recover, session_dirs, stage
from edge_service.sdnotify import Notifier, Watchdog
from edge_service.storage import DiskStatus, apply_retention, disk_status

log = logging.getLogger(__name__)


class Service:
    def __init__(self, cfg: AppConfig, *, mode: str = "service") -> None:
        self.cfg = cfg
        self.mode = mode
        self.notifier = Notifier()
        self.watchdog = Watchdog(self.notifier)
        self.detector: Any = None
        self.pub: Any = None
        self.delivery: Any = None  # edge_service.integration.delivery.HospitalDelivery
        self._lock: StateLock | None = None
        self._umask: int | None = None
        self._status: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    def open(self, connect_timeout_s: float | None = None) -> bool:
        """Lock the state dir, load the model, start the publisher. Returns whether the
        broker answered; raises BrokerError when it never can with this configuration."""
        from edge_service import memtune
        from edge_service.detector import Detector
        from edge_service.mqtt import Publisher

        memtune.configure()  # flat RSS over months of sessions (see edge_service.memtune)
        memtune.trim()  # what imports left free on the heap would otherwise serve big blocks
        # Recordings and the outbox are health data: owner-only, whatever systemd says.
        self._umask = os.umask(0o077)
        s = self.cfg.session
        for d in (s.state_dir, s.recordings_dir):
            try:
                d.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise ConfigError(f"cannot create {d}: {exc.strerror}") from None
            if not os.access(d, os.W_OK | os.X_OK):
                raise ConfigError(f"{d} is not writable by this user")
        self._lock = StateLock(s.state_dir)
        if not self._lock.acquire():
            raise ConfigError(
                f"another dgs-edge process is using {s.state_dir}; stop it first (one service "
                "per state_dir)"
            )
        self.detector = Detector.load(settings=self.cfg.detector)  # fails fast on a bad model
        seg_path = getattr(getattr(self.detector, "seg", None), "path", None)
        self._status["model"] = {
            "state": "loaded",
            "file": Path(seg_path).name if seg_path else "unknown",
            "precision": self.cfg.detector.precision,
        }
        self._status["mode"] = self.mode
        self.pub = Publisher(self.cfg.mqtt, s.state_dir / "outbox.sqlite")
        self.update_disk()
        self.pub.start(status=self._status)
        from edge_service.integration.hook import open_delivery

        self.delivery = open_delivery(self.cfg)  # [dicom]/[fhir] queues; export before publish
        timeout = connect_timeout_s or max(5.0, self.cfg.mqtt.connack_timeout_s + 3.0)
        ok = bool(self.pub.wait_connected(timeout))
        if not ok:
            # Not fatal: the outbox keeps everything until the broker is back.
            log.warning("broker %s not reachable yet (%s); results are kept in the outbox",
                        self.cfg.mqtt.url, self.pub.last_error)  # fmt: skip
        return ok

    def close(self) -> None:
        self.notifier.stopping()
        self.watchdog.stop()
        if self.pub is not None:
            self.pub.stop()
            self.pub = None
        from edge_service.integration.hook import close_delivery

        close_delivery(self.delivery)
        self.delivery = None
        if self._lock is not None:
            self._lock.release()
        if self._umask is not None:
            os.umask(self._umask)
            self._umask = None

    # ------------------------------------------------------------------ status
    def set_status(self, **fields: Any) -> None:
        changed = {k: v for k, v in fields.items() if self._status.get(k) != v}
        if not changed:
            return
        self._status.update(changed)
        if self.pub is not None:
            self.pub.set_status(changed)

    def update_disk(self) -> DiskStatus:
        st = disk_status(self.cfg.session.recordings_dir, self.cfg.storage)
        d = st.as_dict()
        # Re-publish on a state change, or when free space moved by >= 5 % of the disk.
        prev = self._status.get("disk")
        moved = (
            not isinstance(prev, dict)
            or prev.get("state") != d["state"]
            or abs(float(prev.get("free_mb", 0)) - st.free_mb) >= 0.05 * max(st.total_mb, 1)
        )
        if moved:
            self.set_status(disk=d)
        if self.pub is not None:
            self.pub.set_alarm("disk_low", st.low)
        return st

    def health(self) -> dict[str, Any]:
        """For a health endpoint: status document, disk, pending sessions, alarms."""
        doc: dict[str, Any] = {"disk": self.update_disk().as_dict()}
        if self.pub is not None:
            doc["status"] = self.pub.status_snapshot()
            doc["outbox_pending"] = self.pub.outbox.count()
            doc["alarms"] = self.pub.alarms
        return doc

    # ------------------------------------------------------------------ recovery
    def recover(self, hold: Callable[[Path], bool] | None = None) -> RecoveryReport:
        """Finish every unfinished session in recordings_dir (see edge_service.recovery);
        sessions for which hold(path) is true are repaired and analysed but not queued."""
        from edge_service.analysis.session import analyze_session

        def analyze(path: Path, det: Any) -> dict[str, Any]:
            return analyze_session(
                path,
                detector=det,
                settings=self.cfg.analysis,
                progress=lambda done, total: self.watchdog.beat(),
            )

        dirs = session_dirs(self.cfg.session.recordings_dir)
        report = recover(
            dirs,
            detector=self.detector,
            publisher=self.pub,
            pending=self.pub.outbox.pending_sessions(),
            analyze=analyze,
            hold=hold,
        )
        if report.published or report.parked or report.waiting:
            log.warning("recovery: %s", report.summary())
        self.pub.set_alarm("recording_failed", bool(report.waiting))
        return report

    def undelivered(self) -> list[Path]:
        pending = self.pub.outbox.pending_sessions()
        return [
            p
            for p in session_dirs(self.cfg.session.recordings_dir)
            if stage(p, pending) not in ("delivered", "parked")
        ]

    def after_session(self) -> list[Path]:
        """Between sessions: retention, and free heap pages back to the kernel."""
        from edge_service import memtune

        deleted = self.retention()
        memtune.trim()
        return deleted

    def retention(self) -> list[Path]:
        pending = self.pub.outbox.pending_sessions()
        return apply_retention(
            session_dirs(self.cfg.session.recordings_dir),
            delivered=lambda p: stage(p, pending) == "delivered",
            settings=self.cfg.storage,
            disk_path=self.cfg.session.recordings_dir,
        )

    def wait_delivered(self, timeout_s: float) -> int:
        """Wait until the outbox is empty; returns how many messages are still queued."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.watchdog.beat()
            if self.pub.permanent_error:
                raise BrokerError(self.pub.permanent_error)
            n = int(self.pub.outbox.count())
            if n == 0 or time.monotonic() >= deadline:
                return n
            time.sleep(0.05)
