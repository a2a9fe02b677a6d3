"""`dgs-clip monitor`: live hip-angle table from the clip, optionally recorded to imu.jsonl."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections import deque

from edge_service.clip.cli_support import add_port_args, open_link
from edge_service.clip.link import ClipLink
from edge_service.clip.timeline import ImuJsonlWriter, TimedSample
from edge_service.errors import DeviceError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "monitor",
        help="live table of hip angles (and link health) from the clip",
        description="Start streaming and show flexion/adduction/rotation live. Ctrl-C stops.",
    )
    add_port_args(p)
    p.add_argument(
        "--jsonl",
        metavar="FILE",
        help="also record every sample to FILE (imu.jsonl format of the session recording)",
    )
    p.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds")
    p.add_argument("--rate", type=int, metavar="HZ", help="set the clip's sample rate first")
    p.add_argument(
        "--no-start",
        action="store_true",
        help="do not send start/stop (the clip is already streaming)",
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="one text line per second instead of the live table (default when "
        "stdout is not a terminal)",
    )
    p.set_defaults(func=run)


class _Tracker:
    def __init__(self) -> None:
        self.last: TimedSample | None = None
        self.arrivals: deque[float] = deque(maxlen=400)
        self.lock = threading.Lock()

    def __call__(self, ts: TimedSample) -> None:
        with self.lock:
            self.last = ts
            self.arrivals.append(time.monotonic())

    def rate(self) -> float:
        with self.lock:
            a = list(self.arrivals)
        now = time.monotonic()
        recent = [x for x in a if now - x <= 1.0]
        return float(len(recent))


def _row(link: ClipLink, tr: _Tracker) -> dict[str, str]:
    ts = tr.last
    d = link.decoder.stats
    c = link.clock.state()
    unc = "-" if c.uncertainty_s == float("inf") else f"{c.uncertainty_s * 1e3:.2f}"
    base = {
        "rate_hz": f"{tr.rate():.0f}",
        "link": link.stats.state,
        "lost": str(d.lost_frames),
        "crc": str(d.crc_errors),
        "resyncs": str(d.resyncs),
        "drift_ppm": f"{c.drift_ppm:+.0f}" if c.synced else "-",
        "sync_ms": unc,
    }
    if ts is None:
        return {"flexion": "-", "adduction": "-", "rotation": "-", "status": "-", **base}
    s = ts.sample
    return {
        "flexion": f"{s.flexion_deg:7.2f}",
        "adduction": f"{s.adduction_deg:7.2f}",
        "rotation": f"{s.rotation_deg:7.2f}",
        "status": ",".join(s.status) or "-",
        **base,
    }


def run(args: argparse.Namespace) -> int:
    if args.seconds is not None and args.seconds <= 0:
        raise DeviceError("--seconds must be positive")
    writer: ImuJsonlWriter | None = None
    tr = _Tracker()
    plain = args.plain or not sys.stdout.isatty()
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        with open_link(args) as link:
            # Only after the port opened: a failed start leaves no empty recording behind.
            writer = link.writer = ImuJsonlWriter(args.jsonl) if args.jsonl else None
            link.subscribe(tr)
            if args.rate:
                link.set_rate(args.rate)
            if not args.no_start:
                link.start()
            try:
                if plain:
                    _plain_loop(link, tr, deadline)
                else:
                    _live_loop(link, tr, deadline)
            except KeyboardInterrupt:
                pass
            finally:
                if not args.no_start:
                    with contextlib.suppress(DeviceError):
                        link.stop()
            st = link.stats
            d = link.decoder.stats
    finally:
        if writer is not None:
            writer.close()
    rec = f", {writer.lines} recorded to {args.jsonl}" if writer else ""
    print(
        f"{st.samples} samples, {d.lost_frames} lost, {d.crc_errors} CRC errors, "
        f"{d.resyncs} resyncs, {st.disconnects} disconnects{rec}"
    )
    return 0


def _done(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _plain_loop(link: ClipLink, tr: _Tracker, deadline: float | None) -> None:
    next_print = time.monotonic() + 1.0
    printed = False
    while not _done(deadline):
        time.sleep(0.05)
        if time.monotonic() >= next_print:
            next_print += 1.0
            _print_row(link, tr)
            printed = True
    if not printed:  # a run shorter than the print period still shows its last reading
        _print_row(link, tr)


def _print_row(link: ClipLink, tr: _Tracker) -> None:
    r = _row(link, tr)
    print("  ".join(f"{k}={v.strip()}" for k, v in r.items()), flush=True)


def _live_loop(link: ClipLink, tr: _Tracker, deadline: float | None) -> None:
    from rich.live import Live
    from rich.table import Table

    def table() -> Table:
        r = _row(link, tr)
        t = Table(title=f"dgs-clip on {link.port}")
        for k in r:
            t.add_column(k, justify="right")
        t.add_row(*r.values())
        return t

    with Live(table(), refresh_per_second=8) as live:
        while not _done(deadline):
            time.sleep(0.125)
            live.update(table())
