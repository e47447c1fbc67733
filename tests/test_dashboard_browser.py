"""The dashboard in a real browser: Debian's chromium and chromium-driver, driven by selenium.

Skipped, with the reason, where chromium, chromedriver or selenium are missing
(``.ci/run`` installs them).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboardharness import PLUGINS, TOKEN, Dashboard, dashboard_manifest
from hostharness import HostProcess, sghost_env, wait_until
from sghost.host.broker import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
XSS = "<img src=x onerror=alert(1)>"
SCREENSHOT_COPY_ENV = "SGHOST_DASHBOARD_SCREENSHOT"
"""Where to copy the screenshot too (docs/dashboard.png is made with it)."""

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install .[test])")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("chromium or chromedriver not found (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

for noisy in ("selenium", "urllib3"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

RESOURCES = (
    '[resources.climate]\ntype = "echoer"\n\n'
    '[resources.talker]\ntype = "talker"\nsettings = { interval = 0.3 }\n\n'
    f'[resources.scripted]\ntype = "failer"\nrestart = "never"\nsettings = {{ message = "{XSS}" }}\n'
)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    directory = tmp_path_factory.mktemp("dashboard")
    token = directory / "dashboard.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    port = free_port()
    manifest = directory / "hostconfig.toml"
    manifest.write_text(dashboard_manifest(RESOURCES, 'token_file = "dashboard.token"\ncontrol = true\n', port))
    host = HostProcess(manifest, sghost_env(PLUGINS)).start()
    try:
        host.wait_log(f"listening on http://127.0.0.1:{port}", timeout=20)
        yield Dashboard(host, port, token=TOKEN)
    finally:
        host.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def logged_in(browser: Any, dashboard: Dashboard) -> Any:
    """Open the page, log in with the form, and wait for the rows."""
    browser.get(f"http://127.0.0.1:{dashboard.port}/")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    assert wait_until(lambda: len(rows(browser)) == 3, 15), "the three rows did not appear"
    browser.execute_script("window.sghostTestMarker = 'not reloaded';")
    return browser


def rows(browser: Any) -> dict[str, dict[str, str]]:
    """Every row's cells as shown (textContent) and their titles."""
    return browser.execute_script("""
        const found = {};
        for (const row of document.querySelectorAll('#resources tbody tr')) {
          const cells = {};
          for (const cell of row.querySelectorAll('td')) {
            const key = [...cell.classList].find((c) => c.startsWith('col-'));
            if (key) { cells[key.slice(4)] = cell.textContent; cells[key.slice(4) + '_title'] = cell.title; }
          }
          found[row.dataset.resource] = cells;
        }
        return found;
    """)


def test_the_page_shows_one_row_per_resource(dashboard: Dashboard, browser: Any, tmp_path: Path) -> None:
    logged_in(browser, dashboard)
    assert wait_until(lambda: rows(browser)["climate"]["state"] == "running", 15)
    shown = rows(browser)
    climate = shown["climate"]
    assert climate["pid"] == str(dashboard.resource("climate")["pid"])
    assert climate["presence"] == "online" and climate["restarts"] == "0"
    assert browser.find_element(By.ID, "host-name").text == "sghost"
    facts = browser.find_element(By.ID, "host-facts").text
    assert "version" in facts and "broker" in facts
    assert wait_until(lambda: browser.find_element(By.ID, "connection").text == "live", 10)
    assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, "tr[data-resource=climate] button")] == [
        "restart", "stop", "start",
    ]
    browser.find_element(By.CSS_SELECTOR, "tr[data-resource=climate]").click()
    wait_until(lambda: int(browser.find_element(By.ID, "plot-cpu").get_attribute("data-count") or 0) >= 1, 10)
    screenshot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_COPY_ENV):
        shutil.copyfile(screenshot, os.environ[SCREENSHOT_COPY_ENV])
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"the page broke its own Content-Security-Policy, or its script failed: {errors}"


def test_a_killed_resource_goes_through_its_restart_without_a_reload(dashboard: Dashboard, browser: Any) -> None:
    logged_in(browser, dashboard)
    assert wait_until(lambda: rows(browser)["talker"]["state"] == "running", 15)
    before = rows(browser)["talker"]
    browser.execute_script("""
        window.sghostSeen = [];
        const row = document.querySelector('tr[data-resource=talker]');
        new MutationObserver(() => {
          const cell = (name) => row.querySelector('.col-' + name).textContent;
          window.sghostSeen.push(cell('state') + ' ' + cell('pid'));
        }).observe(row, {subtree: true, childList: true, characterData: true});
    """)
    os.kill(int(before["pid"]), signal.SIGKILL)

    def restarted() -> bool:
        now = rows(browser)["talker"]
        return now["state"] == "running" and now["pid"] not in (before["pid"], "—") and now["restarts"] != "0"

    assert wait_until(restarted, 15), f"the row did not show the restart: {rows(browser)['talker']}"
    assert browser.execute_script("return window.sghostTestMarker") == "not reloaded"
    seen = browser.execute_script("return window.sghostSeen")
    assert any(before["pid"] not in entry for entry in seen), seen


def test_a_plot_has_points(dashboard: Dashboard, browser: Any) -> None:
    logged_in(browser, dashboard)
    browser.find_element(By.CSS_SELECTOR, "tr[data-resource=climate]").click()

    def points(plot: str) -> int:
        """The number of points of the plot's line (read in one go: the line is redrawn at every sample)."""
        script = "const line = document.querySelector(`#plot-${arguments[0]} polyline`);" \
                 "return line ? line.getAttribute('points').trim().split(/\\s+/).filter(Boolean).length : 0;"
        return int(browser.execute_script(script, plot))

    assert wait_until(lambda: points("cpu") >= 2 and points("memory") >= 2, 20), "no plot with two points"
    assert points("restarts") >= 2
    scale = browser.find_element(By.ID, "scale-memory").text
    assert "samples" in scale and "MiB" in scale


def test_a_log_is_followed(dashboard: Dashboard, browser: Any) -> None:
    logged_in(browser, dashboard)
    browser.find_element(By.CSS_SELECTOR, "tr[data-resource=talker]").click()
    browser.find_element(By.ID, "follow").click()

    def last_tick() -> int:
        lines = [line for line in browser.find_element(By.ID, "log").text.splitlines() if line.startswith("tick ")]
        return int(lines[-1].split()[1]) if lines else 0

    first = wait_until(last_tick, 10)
    assert first, "no lines of talker's output"
    assert wait_until(lambda: last_tick() >= int(first) + 3, 10), "new lines did not follow"  # type: ignore[call-overload]


def test_a_resource_error_full_of_markup_is_shown_as_text_and_runs_nothing(
    dashboard: Dashboard, browser: Any
) -> None:
    logged_in(browser, dashboard)
    assert wait_until(lambda: XSS in rows(browser)["scripted"]["error"], 15), rows(browser)["scripted"]
    scripted = rows(browser)["scripted"]
    assert scripted["error_title"] == scripted["error"], "the whole text is in the title"
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    browser.find_element(By.CSS_SELECTOR, "tr[data-resource=scripted]").click()
    assert wait_until(lambda: XSS in browser.find_element(By.ID, "log").text, 10)
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (reading it is the check)
