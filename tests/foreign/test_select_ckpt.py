"""Checkpoint choice of models/train/select_ckpt.py (the rule fixed before results).

Needs torch (the `train` extra), which CI installs.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="torch is not installed (train extra only)")

from models.train.select_ckpt import Scores, choose


def _s(ap: float, csa: float, sens: int = 10, spec: int = 10) -> Scores:
    return Scores(ap, csa, 100, 100, (sens, 10), (spec, 10))


def _row(plain: Scores, real: Scores, rf: Scores) -> dict[str, Scores]:
    return {"plain": plain, "real": real, "rf": rf}


START = _row(_s(0.18, 3.0), _s(0.20, 3.5), _s(0.30, 7.0))


def test_keeps_start_when_nothing_transfers_better() -> None:
    rows = {"start": START, "a": _row(_s(0.18, 3.0), _s(0.21, 3.6), _s(0.31, 7.5))}
    assert choose(rows, "start") == "start"


def test_best_shifted_errors_among_those_that_keep_the_own_numbers() -> None:
    rows = {
        "start": START,
        # best on the shifted splits, but its plain AP got worse by more than the slack
        "worse_own": _row(_s(0.19, 3.0), _s(0.10, 2.0), _s(0.15, 3.0)),
        # loses one plain calcification session
        "lost_calc": _row(_s(0.18, 3.0, sens=9), _s(0.10, 2.0), _s(0.15, 3.0)),
        # loses a calcification-free realism session
        "real_spec": _row(_s(0.18, 3.0), _s(0.10, 2.0, spec=9), _s(0.15, 3.0)),
        "good": _row(_s(0.184, 3.05), _s(0.15, 3.0), _s(0.25, 5.0)),
        "better": _row(_s(0.17, 2.9), _s(0.14, 2.8), _s(0.22, 4.5)),
    }
    assert choose(rows, "start") == "better"
    del rows["better"]
    assert choose(rows, "start") == "good"
