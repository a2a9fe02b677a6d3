"""Procedure mode in a real headless browser (Debian's chromium + chromedriver, Selenium):
the page opened with ?protocol=injection starts an injection session on a replayed phantom
intraneural approach; the needle overlay is drawn, the stop alarm shows as a banner and
sounds (WebAudio), the alarm log names it, and the procedure result appears at the end."""

from __future__ import annotations

from typing import Any

import pytest

from tests.procedure.oracle import TruthLocator
from tests.workstation.test_browser import driver, until  # noqa: F401  (fixture)

pytestmark = [pytest.mark.sim]

# the needle is drawn cyan (no alarm), amber (caution) or red (stop)
NEEDLE_PIXELS = """
const c = document.getElementById('view'), g = c.getContext('2d');
const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
for (let i = 0; i < d.length; i += 4) {
  const r = d[i], gg = d[i+1], b = d[i+2];
  if ((r < 40 && gg > 200 && b > 200) || (r > 230 && gg < 80 && b < 70) || (r > 230 && gg > 150 && gg < 200 && b < 40)) n++;
}
return n;"""


def test_overlay_alarm_and_result_in_the_page(
    procedure_service: Any,
    needle_recordings: Any,
    driver: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    rec = needle_recordings("intraneural")
    _, server = procedure_service(rec, locator_factory=lambda: TruthLocator(rec))
    driver.get(server.url + "/?protocol=injection")
    until(lambda: "probe" in driver.find_element(By.ID, "pill-probe").text, 15, "status")
    assert driver.execute_script("return document.getElementById('protocol').value") == "injection"
    assert driver.find_element(By.ID, "procedure").is_displayed()
    driver.find_element(By.ID, "acc").send_keys("ACC-88")
    driver.find_element(By.ID, "pid").send_keys("PAT-88")
    driver.find_element(By.ID, "start").click()
    until(lambda: driver.find_element(By.ID, "state").text == "acquiring", 15, "acquiring")
    until(lambda: driver.execute_script("return window.dgs.procedure && window.dgs.procedure.needle.found"),
          60, "a needle in the overlay")  # fmt: skip
    until(lambda: driver.execute_script(NEEDLE_PIXELS) > 20, 15, "needle drawn")
    until(lambda: driver.find_element(By.ID, "d-nerve").text not in ("", "—"), 10, "distance")
    until(lambda: "stop" in driver.find_element(By.ID, "alarm").get_attribute("class"), 60,
          "the stop banner")  # fmt: skip
    banner = driver.find_element(By.ID, "alarm")
    assert "STOP" in banner.text and "nerve_stop" in banner.get_attribute("data-kinds")
    assert driver.execute_script("return window.dgs.beeps") >= 1
    kinds = driver.execute_script(
        "return [...document.querySelectorAll('#alarm-log li')].map(e => e.dataset.kind)"
    )
    assert "nerve_stop" in kinds and "nerve_caution" in kinds
    # the replay ends: the session is analysed and the procedure result is shown
    until(lambda: driver.find_element(By.ID, "state").text == "done", 120, "done")
    text = until(lambda: driver.find_element(By.ID, "r-min").text, 15, "procedure result")
    assert "entered the nerve outline" in text
    assert driver.execute_script("return document.getElementById('pdf-link').href").endswith(
        "report.pdf"
    )
