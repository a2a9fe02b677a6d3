"""Atomic calibration storage: a power cut after every single filesystem operation.

The firmware's DirFS + persist run against an `os` that dies after N operations
(edge_service.sim.powercut): an in-memory flash that replaces on rename (littlefs, POSIX),
one that refuses to (FAT), and a real directory. After each cut the clip "reboots" and
loads: the old or the new calibration must come back, never none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dgsclip import persist
from dgsclip.calib import Calibration
from dgsclip.config import CALIBRATION_FILE
from dgsclip.storage import DirFS

from edge_service.sim.powercut import CutOs, MemOs, PowerCut


def cal_text(mount: list[float]) -> str:
    c = Calibration()
    for i, v in enumerate(mount):
        c.mount[i] = v
    c.has_mount = True
    c.has_neutral = True
    c.store_reference(c.up)
    return json.dumps(c.to_dict())


OLD = [1.0, 0.0, 0.0, 0.0]
NEW = [0.9238795, 0.0, 0.3826834, 0.0]


def loaded_mount(fs: DirFS) -> tuple[list[float] | None, str | None]:
    c = Calibration()
    problem = persist.load_calibration(fs, c, CALIBRATION_FILE)
    return ([round(v, 5) for v in c.mount] if c.has_mount else None), problem


def _flash(kind: str, tmp: Path) -> tuple[object, object]:
    """(base os for CutOs, opener) of a fresh flash holding the OLD calibration."""
    if kind == "real":
        base, opener, root = os, open, str(tmp)
    else:
        base, opener, root = MemOs(replace=kind == "mem"), None, ""
    DirFS(root, CutOs(base, opener=opener)).write(CALIBRATION_FILE, cal_text(OLD))
    return base, opener


@pytest.mark.parametrize("kind", ["mem", "fat", "real"])
def test_calibration_survives_a_power_cut_at_every_step(kind: str, tmp_path: Path) -> None:
    root = str(tmp_path / "0") if kind == "real" else ""
    if kind == "real":
        os.mkdir(root)
    base, opener = _flash(kind, Path(root))
    full = CutOs(base, opener=opener)
    DirFS(root, full).write(CALIBRATION_FILE, cal_text(NEW))
    steps = list(full.ops)
    assert "remove" not in steps[: steps.index("rename")]  # never remove-then-rename
    assert "fsync" in steps or kind != "real"
    seen = set()
    for k in range(len(steps) + 1):
        r = str(tmp_path / f"cut{k}") if kind == "real" else ""
        if kind == "real":
            os.mkdir(r)
        b, op = _flash(kind, Path(r))
        cut = CutOs(b, budget=k, opener=op)
        try:
            DirFS(r, cut).write(CALIBRATION_FILE, cal_text(NEW))
            assert k == len(steps)
        except PowerCut:
            assert k < len(steps)
        # Reboot: the loader finds a valid calibration whatever the cut left.
        mount, problem = loaded_mount(DirFS(r, CutOs(b, opener=op)))
        assert mount in (OLD, [round(v, 5) for v in NEW]), (k, steps[k - 1 : k + 1], problem)
        seen.add(tuple(mount))
        if k == len(steps):
            assert mount == [round(v, 5) for v in NEW] and problem is None
        # ...and a second boot reads the same without recovering again.
        assert loaded_mount(DirFS(r, CutOs(b, opener=op)))[0] == mount
    assert len(seen) == 2


def test_leftover_tmp_alone_is_recovered_and_promoted() -> None:
    """What the old remove-then-rename code left after a cut between the two."""
    mem = MemOs()
    mem.files[CALIBRATION_FILE + ".tmp"] = cal_text(NEW)
    mount, problem = loaded_mount(DirFS("", mem))
    assert mount == [round(v, 5) for v in NEW]
    assert problem is not None and ".tmp" in problem
    assert CALIBRATION_FILE in mem.files


def test_corrupt_calibration_keeps_the_last_good_copy_or_says_why() -> None:
    mem = MemOs()
    mem.files[CALIBRATION_FILE] = '{"version": 1, "mount": [1, 2'  # torn by a bad flash
    mem.files[CALIBRATION_FILE + ".bak"] = cal_text(OLD)
    assert loaded_mount(DirFS("", mem))[0] == OLD
    mem2 = MemOs()
    mem2.files[CALIBRATION_FILE] = '{"version": 9}'
    mount, problem = loaded_mount(DirFS("", mem2))
    assert mount is None and problem is not None and "recalibrate" in problem
