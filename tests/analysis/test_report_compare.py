"""report.html structure, compare (contralateral / follow-up) and the compare CLI."""

from __future__ import annotations

import base64
import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_service.analysis.compare import compare
from edge_service.analysis.report import render_report
from edge_service.analysis.result import write_json_atomic
from edge_service.cli.edge import main
from edge_service.errors import InputError
from tests.analysis.test_session import _run

VOID = {
    "meta",
    "br",
    "img",
    "input",
    "link",
    "hr",
    "image",
    "rect",
    "line",
    "circle",
    "path",
    "polygon",
}


class _Tags(HTMLParser):
    """Checks that every non-void element is closed in order; collects svg/image data."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.svgs = 0
        self.images: list[str] = []
        self.polygons: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svgs += 1
        if tag == "image":
            self.images.append(a.get("href") or "")
        if tag == "polygon":
            self.polygons.append(a.get("stroke") or "")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "image":
            self.images.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.sim
def test_report_is_self_contained_with_plots_key_frame_and_findings() -> None:
    an, _, _ = _run("restricted-left-calc")
    res = an.finish()
    page = render_report(res, an.key)
    p = _Tags()
    p.feed(page)
    assert not p.errors and p.stack == [], (p.errors, p.stack)
    # gliding vs IR, displacement, AP over time, angles, key frame
    assert p.svgs >= 5
    [img] = p.images
    png = base64.b64decode(img.removeprefix("data:image/png;base64,"))
    pix = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert an.key is not None and np.array_equal(pix, an.key.pixels)
    assert {"#2ecc71", "#f39c12"} <= set(p.polygons)  # nerve and calcification outlines
    text = " ".join(p.text)
    for f in res["findings"]:
        assert f in text.replace("\n", " ") or f.split(":")[0] in text
    assert "RESTRICTED" in text and "Limits of the method" in text
    # Self-contained: nothing is fetched (only the SVG namespace URI appears).
    assert not re.search(r'(src|href)="(https?:|//)', page)


def test_contralateral_compare_ap_ratio_csa_mdd_and_gliding_ratio() -> None:
    a, ta, _ = _run("restricted-left-calc")  # swollen, left
    b, tb, _ = _run("free-right-calc")  # normal, right
    ra, rb = a.finish(), b.finish()
    c = compare(ra, rb)
    assert c["mode"] == "contralateral"
    # ratios are reported to 3 decimals
    assert c["ap_ratio"] == pytest.approx(ta["nerve"]["ap_mm"] / tb["nerve"]["ap_mm"], abs=5e-4)
    diff = ta["nerve"]["csa_mm2"] - tb["nerve"]["csa_mm2"]
    assert c["csa_difference_mm2"] == pytest.approx(diff, abs=0.01)
    assert c["csa_difference_detectable"] is (abs(diff) >= 16.0)
    assert c["gliding_ratio"] == pytest.approx(
        ra["gliding"]["per_10deg_ir_mm"] / rb["gliding"]["per_10deg_ir_mm"], abs=5e-4
    )
    assert c["gliding_ratio"] < 0.5  # restricted vs free
    assert "left swollen" in c["summary"][0]
    with pytest.raises(InputError, match="one left and one right"):
        compare(ra, ra, "contralateral")


def test_followup_orders_by_time_and_reports_changes() -> None:
    base, _, _ = _run("restricted-left-calc")
    later, _, _ = _run("free-left-ligament")
    rb, rl = base.finish(), later.finish()
    rl = copy.deepcopy(rl)
    rl["started_t"] = rb["started_t"] + 90 * 86400.0
    c = compare(rl, rb)  # given in the wrong order on purpose
    assert c["mode"] == "followup"
    assert c["baseline"]["session_id"] == rb["session_id"]
    ch = c["change"]["ap_diameter_mm"]
    assert ch["change"] == pytest.approx(
        rl["nerve"]["ap_diameter_mm"] - rb["nerve"]["ap_diameter_mm"], abs=1e-3
    )
    assert c["restricted"] == {"baseline": True, "followup": False}
    assert c["calcification_present"] == {"baseline": True, "followup": False}
    with pytest.raises(InputError, match=r"not a dgs\.session-result/1"):
        compare({"schema": "x"}, rb)


def test_compare_cli_prints_summary_json_and_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _, _ = _run("restricted-left-calc")
    b, _, _ = _run("free-right-calc")
    for name, an in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        write_json_atomic(tmp_path / name / "result.json", an.finish())
    assert (
        main(["compare", str(tmp_path / "a"), str(tmp_path / "b" / "result.json"), "--json"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "contralateral" and doc["ap_ratio"] > 1
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "CSA difference" in capsys.readouterr().out
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "result.json").write_text('{"schema": "dgs.session-result/1"')
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not JSON" in err[0]
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
    assert "no result.json" in capsys.readouterr().err


def _tiles(page: str) -> dict[str, str]:
    return dict(re.findall(r'<div class="kpi[^"]*"><span>([^<]+)</span><b>([^<]*)</b></div>', page))


@pytest.mark.sim
def test_report_shows_threshold_repetitions_and_model_statement() -> None:
    an, _, _ = _run("free-left-ligament")
    res = an.finish()
    page = render_report(res, an.key)
    tiles = _tiles(page)
    assert tiles["Gliding"] == "free" and tiles["Max excursion"].endswith(("lateral", "medial"))
    assert not tiles["Max excursion"].startswith("-")
    # The restricted threshold is drawn on the scatter, in its own legend entry.
    thr = res["gliding"]["restricted_below_mm_per_10deg"]
    assert f"restricted below {thr:g} mm/10°" in page
    assert "simulated phantom only" in page and "not clinically validated" in page


@pytest.mark.sim
def test_report_never_shows_a_number_for_an_undetermined_finding() -> None:
    an, _, _ = _run("restricted-left-calc")
    res = an.finish()
    res = copy.deepcopy(res)
    g = res["gliding"]
    # As the analysis writes an undetermined call (numbers kept only as diagnostics).
    g.update(
        restricted=None,
        state="undetermined",
        reason="angles_images_inconsistent",
        reason_text="The hip angles do not match the nerve's movement in the images.",
    )
    res["nerve"].update(state="undetermined", reason="too_few_nerve_frames", reason_text="Too few.")
    res["calcification"].update(present=None, state="undetermined", reason_text="Ambiguous.")
    page = render_report(res, an.key)
    tiles = _tiles(page)
    for name in (
        "Nerve AP",
        "Nerve CSA",
        "Calcification",
        "Max excursion",
        "Per 10° IR",
        "Gliding",
    ):
        assert tiles[name] == "undetermined", (name, tiles[name])
    assert "Not determined, and why" in page
    assert "do not match the nerve&#x27;s movement" in page


def test_scatter_colours_repetitions_apart() -> None:
    from edge_service.analysis.report import REP_COLOURS

    res = {
        "session_id": "s1",
        "side": "left",
        "software": {"version": "x"},
        "series": {
            "t0": 0.0,
            "t_s": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "internal_rotation_deg": [0.0, 30.0, 0.0, 0.0, 30.0, 0.0],
            "displacement_mm": [0.0, 3.0, 0.0, 0.0, 3.1, 0.0],
        },
        "maneuvers": [
            {
                "name": "fair",
                "start_t": 0.0,
                "end_t": 2.0,
                "duration_s": 2,
                "peak_flexion_deg": 1,
                "peak_adduction_deg": 1,
                "peak_internal_rotation_deg": 30,
            },
            {
                "name": "fair",
                "start_t": 3.0,
                "end_t": 5.0,
                "duration_s": 2,
                "peak_flexion_deg": 1,
                "peak_adduction_deg": 1,
                "peak_internal_rotation_deg": 30,
            },
        ],
        "gliding": {
            "restricted": False,
            "fit": None,
            "excursion_mm": 3.0,
            "per_10deg_ir_mm": 1.0,
            "restricted_below_mm_per_10deg": 0.6,
        },
        "nerve": {"ap_diameter_mm": None, "csa_mm2": None},
        "calcification": {"present": False},
    }
    page = render_report(res)
    assert f'fill="{REP_COLOURS[0]}"' in page and f'fill="{REP_COLOURS[1]}"' in page
    assert "fair #1" in page and "fair #2" in page
