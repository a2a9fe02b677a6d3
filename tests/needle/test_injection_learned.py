"""Injection detection end to end with the SHIPPED learned locator (not the phantom's true
tip): a phantom procedure up to shortly after its first aliquot, through the same
ProcedureAnalyzer as the live session and the shipped nerve detector."""

from __future__ import annotations

import pytest

from edge_service.detector import Detector
from edge_service.needle.learned import LearnedLocator
from edge_service.phantom.needle_session import make_session
from edge_service.procedure.analyzer import ProcedureAnalyzer

pytestmark = [pytest.mark.sim]

FPS = 8.0


def test_first_aliquot_found_with_the_learned_locator() -> None:
    ses = make_session("procedure", 3, "train", duration_s=1.0)
    plan = ses.scene.plan
    assert plan is not None and plan.injections
    first = plan.injections[0]
    ses.duration_s = first.t_start + first.duration_s + 3.0
    an = ProcedureAnalyzer(Detector.load(), LearnedLocator(), session={"session_id": "inj"})
    found = 0
    for pf in ses.frames(FPS):
        st, _, _ = an.add_frame(pf.frame)
        found += st.needle_found
    res = an.finish()
    injs = res["injections"]
    assert len(injs) == 1, injs
    inj = injs[0]
    assert first.t_start - 0.5 <= inj["t_start"] <= first.t_start + 3.0, (inj, first)
    # an estimate (injections.py); the phantom's aliquot is 0.2 mL
    assert 0.07 <= inj["volume_ml_est"] <= 0.5, inj
    assert not {"nerve_stop", "nerve_caution", "spread_at_nerve"} & set(res["alarm_counts"])
    assert found >= 0.6 * len(list(range(int(ses.duration_s * FPS))))
