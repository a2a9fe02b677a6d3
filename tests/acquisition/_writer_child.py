"""Child process for the kill -9 test: records frames forever, reporting each completed one."""

from __future__ import annotations

import sys

import numpy as np

from edge_service.acquisition.frame import Frame
from edge_service.recording import RecordingWriter, SessionMeta


def pixels(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (120, 160), dtype=np.uint8)


def main(out_dir: str) -> None:
    meta = SessionMeta(side="right", protocol="piriformis", spacing_mm=(0.3, 0.3))
    w = RecordingWriter(out_dir, meta)
    i = 0
    while True:  # never closes: the parent kills us mid-recording
        w.add_frame(Frame(pixels(i), 1_700_000_000.0 + i / 60, i, None))
        w.add_imu({"t": 1_700_000_000.0 + i / 60, "seq": i, "flexion_deg": float(i)})
        sys.stdout.write(f"{i}\n")
        sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main(sys.argv[1])
