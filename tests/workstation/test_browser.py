"""The workstation page in a real headless browser (Debian's chromium + chromedriver, driven
by Selenium): type an order, record the left side with the overlay and angles moving, stop,
read the result and the report, record the right side, and see the comparison appear."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.sim]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def make_driver() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000"):  # fmt: skip
        opts.add_argument(a)
    # The system chromedriver: Selenium Manager never downloads a browser here.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


@pytest.fixture
def driver() -> Iterator[Any]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium + chromium-driver are not installed: run scripts/setup")
    d = make_driver()
    yield d
    d.quit()


def until(pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as exc:  # the element is not there yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


GREEN_PIXELS = """
const c = document.getElementById('view'), g = c.getContext('2d');
const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
for (let i = 0; i < d.length; i += 4) if (d[i+1] > 150 && d[i] < 120 && d[i+2] < 160) n++;
return n;"""


def _num(driver: Any, css_id: str) -> float | None:
    from selenium.webdriver.common.by import By

    txt = driver.find_element(By.ID, css_id).text
    try:
        return float(txt)
    except ValueError:
        return None


def _record(driver: Any, side: str, until_flexion: float | None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "side")).select_by_value(side)
    Select(driver.find_element(By.ID, "protocol")).select_by_value("exam")
    before = driver.execute_script("return window.dgs.overlays")
    driver.find_element(By.ID, "start").click()
    until(lambda: driver.find_element(By.ID, "state").text == "acquiring", 15, "acquiring")
    # Enough analysed frames for the evidence gates ([analysis.evidence]: >= 10 valid frames,
    # >= 5 with a nerve), or the nerve size is rightly "undetermined" and nothing is compared.
    until(lambda: driver.execute_script("return window.dgs.overlays") >= before + 15, 60,
          "overlay events")  # fmt: skip
    until(lambda: driver.execute_script("return window.dgs.images") >= 3, 15, "live images")
    until(lambda: driver.execute_script(GREEN_PIXELS) > 30, 15, "nerve outline drawn")
    ap = until(lambda: _num(driver, "ap"), 10, "nerve AP")
    assert 4 < ap < 20
    if until_flexion is not None:
        f0 = until(lambda: _num(driver, "ang-flex") is not None, 10, "flexion angle")
        assert f0
        start_flex = _num(driver, "ang-flex")
        assert start_flex is not None
        until(lambda: (_num(driver, "ang-flex") or 0) > until_flexion, 30, "flexion rising")
        assert (_num(driver, "ang-flex") or 0) - start_flex > 10
        until(lambda: driver.execute_script("return window.dgs.trace.length") > 3, 10, "trace")
        done = driver.execute_script(
            "return [...document.querySelectorAll('#steps li.done')].map(e => e.dataset.step)"
        )
        assert done[:1] == ["neutral_rest"]
    driver.find_element(By.ID, "stop").click()
    until(lambda: driver.find_element(By.ID, "state").text == "done", 30, "done")
    until(lambda: driver.find_elements(By.CSS_SELECTOR, "#result .findings li"), 10, "findings")


def test_record_both_sides_and_see_the_comparison(make_workstation: Any, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    w = make_workstation()
    driver.get(w.url + "/")
    until(lambda: "probe" in driver.find_element(By.ID, "pill-probe").text, 10, "status")
    # a start without an order is refused with a message, nothing starts
    driver.find_element(By.ID, "start").click()
    until(lambda: "Cannot start" in driver.find_element(By.ID, "msg").text, 10, "refusal")
    assert w.service.sessions() == []
    driver.find_element(By.ID, "acc").send_keys("ACC-77")
    driver.find_element(By.ID, "pid").send_keys("PAT-77")

    _record(driver, "left", until_flexion=25.0)
    findings = driver.execute_script("return document.querySelector('#result .findings').innerText")
    assert "AP diameter" in findings
    # #result is re-rendered on each session event: read it in one script call
    report, pdf, n_cmp = driver.execute_script(
        "return [document.getElementById('report-link').href,"
        " document.getElementById('pdf-link').href,"
        " document.querySelectorAll('#comparison .cmp').length]"
    )
    assert pdf.endswith("report.pdf")
    assert n_cmp == 0  # one side only

    _record(driver, "right", until_flexion=None)
    # the page re-renders its lists on every event: read them in one script call each
    text = until(lambda: driver.execute_script(
        "const e = document.querySelector('#comparison .cmp[data-mode=\"contralateral\"]');"
        "return e && e.innerText;"), 10, "contralateral comparison")  # fmt: skip
    assert "AP diameter right" in text and "minimal detectable difference" in text
    states = until(lambda: driver.execute_script(
        "return [...document.querySelectorAll('#sessions tbody tr')].map(r => r.dataset.state)"
    ), 10, "session rows")  # fmt: skip
    assert states == ["done", "done"]
    lags = driver.execute_script("return window.dgs.lags")
    assert len(lags) > 10
    # a session started elsewhere (a script, another screen) is followed by the page
    sid = w.client.post("/api/v1/sessions", json={"side": "left", "protocol": "neutral",
                        "accession_number": "ACC-78", "patient_id": "PAT-77"}).json()["id"]  # fmt: skip
    until(lambda: driver.execute_script("return window.dgs.current") == sid, 15, "adopted")
    until(lambda: driver.find_element(By.ID, "state").text == "acquiring", 10, "acquiring")
    w.wait_frames(sid, 5)
    w.client.post(f"/api/v1/sessions/{sid}/stop")
    until(lambda: driver.find_element(By.ID, "state").text == "done", 30, "done")
    driver.get(report)
    assert "Sciatic nerve" in driver.find_element(By.TAG_NAME, "body").text
