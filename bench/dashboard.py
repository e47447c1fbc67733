"""The dashboard's cost and speed (issue 19); prints figures for docs/benchmarks.md.

Run: ``.venv/bin/python bench/dashboard.py`` (``make bench``); ``--quick`` for a short smoke run.

With 50 ``taxisign`` resources on an embedded broker and the dashboard on a
free 127.0.0.1 port (token set):

- the dashboard process's PSS, idle and with one open page;
- its CPU (% of one core) idle, and with one open page (Debian's chromium, headless);
- SIGKILL of a resource -> its row showing the new pid in the browser (p50, max);
- the weight of the page, its script and its style (raw and gzip), and of one status event.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import describe_machine  # noqa: E402

from sghost.host.broker import free_port  # noqa: E402

RESOURCES = 50
TOKEN = "bench-dashboard-token-0123456789abcdef"
STATIC = ROOT / "sghost" / "dashboard" / "static"


def manifest(directory: Path, port: int) -> Path:
    token = directory / "dashboard.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    tables = "".join(f'[resources.sign{n:02d}]\ntype = "taxisign"\n\n' for n in range(RESOURCES))
    path = directory / "hostconfig.toml"
    path.write_text(
        f'[host]\nname = "bench"\nhealth_interval = 5.0\n\n[broker]\nembedded = true\nport = {free_port()}\n\n'
        f'[dashboard]\nenabled = true\nlisten = "127.0.0.1:{port}"\ntoken_file = "dashboard.token"\n\n{tables}'
    )
    return path


def api(port: int, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"bench/dashboard.py: {what} not within {timeout} s")


def dashboard_process(host: psutil.Process, port: int) -> psutil.Process:
    for process in host.children(recursive=True):
        try:
            if any(c.laddr and c.laddr.port == port and c.status == "LISTEN" for c in process.net_connections("tcp")):
                return process
        except psutil.Error:
            continue
    raise SystemExit("bench/dashboard.py: no process of sghost's tree listens on the dashboard's port")


def cpu_percent(process: psutil.Process, seconds: float) -> float:
    before = process.cpu_times()
    time.sleep(seconds)
    after = process.cpu_times()
    return (after.user + after.system - before.user - before.system) / seconds * 100


def memory(process: psutil.Process) -> str:
    """PSS (its share of what it shares with the zygote and its siblings) and USS (its own pages)."""
    info = process.memory_full_info()
    return f"PSS {info.pss / 1048576:.1f} MiB (USS {info.uss / 1048576:.1f} MiB)"


def browser(profile: Path) -> Any:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1400,900"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "chromedriver")
    return webdriver.Chrome(service=service, options=options)


def open_page(driver: Any, port: int) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"http://127.0.0.1:{port}/")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(lambda: driver.execute_script("return document.querySelectorAll('#resources tbody tr').length")
             == RESOURCES, 30, "every row in the browser")


def kill_to_row(driver: Any, port: int, name: str) -> float:
    """Seconds from SIGKILL of ``name`` to its row showing a new pid in the browser."""
    pid = wait_for(lambda: (values := api(port, "/api/status")["resources"][name])["state"] == "running"
                   and values["pid"], 30, f"{name} running")
    driver.execute_script("""
        const name = arguments[0], old = String(arguments[1]);
        window.benchSeen = null;
        const cell = document.querySelector(`tr[data-resource="${name}"] .col-pid`);
        const observer = new MutationObserver(() => {
          const text = cell.textContent;
          if (text !== old && /^[0-9]+$/.test(text)) { window.benchSeen = Date.now(); observer.disconnect(); }
        });
        observer.observe(cell, {subtree: true, childList: true, characterData: true});
    """, name, pid)
    time.sleep(0.5)  # sleep-ok: a bench, letting the observer settle before the kill
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    seen = wait_for(lambda: driver.execute_script("return window.benchSeen"), 30, f"{name}'s new pid in the row")
    return seen / 1000 - killed_at


def weights(port: int) -> list[str]:
    lines = []
    for name in ("index.html", "app.js", "style.css"):
        data = (STATIC / name).read_bytes()
        lines.append(f"{name}: {len(data) / 1024:.1f} KiB ({len(gzip.compress(data)) / 1024:.1f} KiB gzip)")
    status = api(port, "/api/status")
    status.pop("processes", None)
    event = json.dumps({"status": status}, separators=(",", ":")).encode()
    lines.append(f"one status event at {RESOURCES} resources: {len(event) / 1024:.1f} KiB "
                 f"({len(gzip.compress(event)) / 1024:.1f} KiB gzip; sent every 5 s to each open page)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows and few kills")
    args = parser.parse_args()
    window = 10.0 if args.quick else 60.0
    kills = 3 if args.quick else 15
    print(describe_machine())
    with tempfile.TemporaryDirectory(prefix="sghost-bench-dashboard-") as temporary:
        directory = Path(temporary)
        port = free_port()
        path = manifest(directory, port)
        host = subprocess.Popen(
            [sys.executable, "-m", "sghost", "start", "-c", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        driver = None
        try:
            wait_for(lambda: sum(v["state"] == "running" for v in api(port, "/api/status")["resources"].values())
                     == RESOURCES, 90, f"{RESOURCES} resources running")
            time.sleep(5)  # sleep-ok: a bench, letting start-up settle before measuring idle
            process = dashboard_process(psutil.Process(host.pid), port)
            print(f"dashboard process, {RESOURCES} resources, no page: {memory(process)}, "
                  f"CPU {cpu_percent(process, window):.3f} % of one core over {window:g} s")
            if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
                print("chromium or chromedriver missing: no figures with an open page")
                return
            driver = browser(directory / "profile")
            open_page(driver, port)
            print(f"dashboard process, one open page: {memory(process)}, "
                  f"CPU {cpu_percent(process, window):.3f} % of one core over {window:g} s")
            delays = [kill_to_row(driver, port, f"sign{n:02d}") for n in range(kills)]
            median, worst = statistics.median(delays) * 1000, max(delays) * 1000
            print(f"SIGKILL -> new pid in the browser's row, {kills} kills: p50 {median:.0f} ms, max {worst:.0f} ms")
            for line in weights(port):
                print(line)
        finally:
            if driver is not None:
                driver.quit()
            host.send_signal(signal.SIGTERM)
            try:
                host.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(host.pid, signal.SIGKILL)
                host.wait()


if __name__ == "__main__":
    main()
