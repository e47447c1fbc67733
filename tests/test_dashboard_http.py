"""The dashboard over plain HTTP: its API, its own supervised process, and everything it refuses."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest

from dashboardharness import TOKEN, Dashboard, start_dashboard
from hostharness import HostProcess, run_cli, wait_until

RESOURCES = '[resources.a]\ntype = "echoer"\n\n[resources.b]\ntype = "talker"\n'
SAME_ORIGIN_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def read_only(host_factory: Callable[..., HostProcess], tmp_path: Path) -> Dashboard:
    return start_dashboard(host_factory, tmp_path, RESOURCES, token=True)


@pytest.fixture
def controlling(host_factory: Callable[..., HostProcess], tmp_path: Path) -> Dashboard:
    return start_dashboard(host_factory, tmp_path, RESOURCES, token=True, control=True)


def running_over_control(host: HostProcess, name: str) -> bool:
    """Whether ``sghost status --json`` (not the dashboard) shows ``name`` running."""
    result = run_cli("status", "--json", "-c", str(host.manifest))
    return result.returncode == 0 and json.loads(result.stdout)["resources"][name]["state"] == "running"


def running_pid(dashboard: Dashboard, name: str) -> int:
    return int(dashboard.wait_resource(name, lambda values: values["state"] == "running" and values["pid"])["pid"])


# ---------------------------------------------------------------- the API


def test_api_status_is_the_document_of_sghost_status_json(read_only: Dashboard) -> None:
    running_pid(read_only, "a")
    status = read_only.status()
    assert status["host"] == "sghost"
    assert set(status["resources"]) == {"a", "b"}
    assert {"state", "restarts", "pid", "uptime", "cpu", "memory", "error", "waiting_for"} <= set(
        status["resources"]["a"]
    )


def test_api_logs_returns_the_last_lines_as_json(read_only: Dashboard) -> None:
    def ticks() -> list[dict[str, str]]:
        lines = read_only.json("/api/resources/b/logs?n=3")["lines"]
        return lines if all(line["text"].startswith("tick ") for line in lines) else []

    lines = wait_until(ticks, 10)
    assert [line["resource"] for line in lines] == ["b"] * 3  # type: ignore[union-attr]
    status, _headers, body = read_only.request("GET", "/api/resources/nothere/logs?n=3")
    assert status == 404 and "unknown resource 'nothere'" in json.loads(body)["error"]
    for wrong in ("many", "-1", "1001", "%C2%B2"):  # the last: a superscript two, a digit to str.isdigit()
        status, _headers, body = read_only.request("GET", f"/api/resources/b/logs?n={wrong}")
        assert status == 400 and "expected a whole number from 0 to 1000" in json.loads(body)["error"], wrong


def test_history_exists_before_any_page_opens(read_only: Dashboard) -> None:
    history = wait_until(lambda: (h := read_only.json("/api/resources/a/history")) and len(h["t"]) >= 2 and h, 20)
    assert history, "fewer than two samples in 20 s"
    assert len(history["cpu"]) == len(history["memory"]) == len(history["restarts"]) == len(history["t"])
    assert history["interval"] <= 5


def test_api_events_pushes_a_state_change(read_only: Dashboard) -> None:
    pid = running_pid(read_only, "a")
    connection = read_only.connection(timeout=15)
    connection.request("GET", "/api/events", headers={"Authorization": f"Bearer {TOKEN}"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/event-stream")

    def events() -> object:
        event = ""
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                yield event, json.loads(line[len("data: "):])

    stream = events()
    first_event, first = next(stream)  # type: ignore[call-overload]
    assert first_event == "status" and first["status"]["resources"]["a"]["pid"] == pid
    os.kill(pid, signal.SIGKILL)
    for event, data in stream:  # type: ignore[attr-defined]
        if event == "state" and data["resource"] == "a" and data["values"]["pid"] not in (pid, None):
            assert data["values"]["restarts"] >= 1
            break
    connection.close()


def test_the_dashboard_runs_in_its_own_process_which_is_restarted_when_killed(read_only: Dashboard) -> None:
    process = read_only.process()
    assert process.pid != read_only.host.pid
    process.kill()
    read_only.host.wait_log("dashboard: its process ended", timeout=10)
    read_only.host.wait_log(f"listening on http://127.0.0.1:{read_only.port}", count=2, timeout=15)
    assert read_only.process().pid != process.pid
    assert read_only.status()["resources"]["a"]["state"] == "running", "resources kept running"


def test_a_hung_dashboard_process_is_killed_and_started_again(
    host_factory: Callable[..., HostProcess], tmp_path: Path
) -> None:
    dashboard = start_dashboard(host_factory, tmp_path, RESOURCES, token=True, extra="watchdog = 2")
    hung = dashboard.process()
    hung.suspend()  # SIGSTOP: it still holds its port, but answers nothing and sends no heartbeat
    dashboard.host.wait_log(
        f"dashboard: no heartbeat for 2 s ([dashboard] watchdog); killing pid {hung.pid}", timeout=20
    )
    dashboard.host.wait_log(f"listening on http://127.0.0.1:{dashboard.port}", count=2, timeout=20)
    assert dashboard.process().pid != hung.pid
    assert dashboard.status()["resources"]["a"]["state"] == "running", "resources kept running"


# ---------------------------------------------------------------- the token


def test_without_a_token_or_with_a_wrong_one_the_api_refuses(read_only: Dashboard) -> None:
    status, headers, _body = read_only.request("GET", "/api/status", bearer=False)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    status, _headers, _body = read_only.request("GET", "/api/status", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, _headers, _body = read_only.request("GET", f"/api/status?token={TOKEN}", bearer=False)
    assert status == 401, "a token in the URL is not a token"
    for path in ("/api/events", "/api/resources/a/logs?n=1", "/api/resources/a/history", "/api/dashboard"):
        assert read_only.request("GET", path, bearer=False)[0] == 401, path


def test_the_page_without_a_session_is_a_login_form_with_one_password_field(read_only: Dashboard) -> None:
    status, _headers, body = read_only.request("GET", "/", bearer=False)
    page = body.decode()
    assert status == 200
    assert page.count("<input") == 1 and 'type="password"' in page and 'action="/login"' in page
    assert "app.js" not in page


def test_the_login_form_sets_an_http_only_same_site_strict_cookie(read_only: Dashboard) -> None:
    body = urlencode({"token": "wrong"}).encode()
    status, headers, page = read_only.request("POST", "/login", SAME_ORIGIN_FORM, body, bearer=False)
    assert status == 401 and "set-cookie" not in headers and b"Wrong token." in page
    body = urlencode({"token": TOKEN}).encode()
    status, headers, _page = read_only.request("POST", "/login", SAME_ORIGIN_FORM, body, bearer=False)
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";")[0]
    status, _headers, _body = read_only.request("GET", "/api/status", {"Cookie": session}, bearer=False)
    assert status == 200
    status, _headers, page = read_only.request("GET", "/", {"Cookie": session}, bearer=False)
    assert b"/static/app.js" in page


def test_a_foreign_host_header_is_refused_even_with_the_token(read_only: Dashboard) -> None:
    for host in ("evil.example", "evil.example:80", f"attacker.test:{read_only.port}"):
        status, headers, body = read_only.request("GET", "/api/status", {"Host": host})
        assert status == 403, host
        assert "Host header" in json.loads(body)["error"]
        assert "default-src 'none'" in headers["content-security-policy"]
    assert read_only.request("GET", "/api/status", {"Host": f"localhost:{read_only.port}"})[0] == 200


def test_every_answer_carries_the_security_headers(read_only: Dashboard) -> None:
    for method, path, bearer in (("GET", "/", False), ("GET", "/api/status", False), ("GET", "/nothing", True),
                                 ("GET", "/static/app.js", False), ("PUT", "/api/status", True)):
        _status, headers, _body = read_only.request(method, path, bearer=bearer)
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "same-origin", path


# ---------------------------------------------------------------- state-changing requests


def test_with_control_false_no_state_changing_request_succeeds(read_only: Dashboard) -> None:
    pid = running_pid(read_only, "a")
    origin = {"Origin": read_only.origin}
    for op in ("restart", "stop", "start"):
        status, _headers, body = read_only.request("POST", f"/api/resources/a/{op}", origin)
        assert status == 404, op
        assert "read-only" in json.loads(body)["error"]
    # each refusal was answered before any command could reach the host: it stands as it was
    values = read_only.resource("a")
    assert (values["pid"], values["restarts"], values["state"]) == (pid, 0, "running")


def test_a_cross_origin_post_is_refused_even_with_a_valid_token(controlling: Dashboard) -> None:
    pid = running_pid(controlling, "a")
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{controlling.port + 1}"):
        status, _headers, body = controlling.request("POST", "/api/resources/a/restart", {"Origin": origin})
        assert status == 403, origin
        assert "Origin" in json.loads(body)["error"]
    status, _headers, _body = controlling.request(
        "POST", "/api/resources/a/restart", {"Origin": controlling.origin, "Sec-Fetch-Site": "cross-site"}
    )
    assert status == 403
    values = controlling.resource("a")
    assert (values["pid"], values["restarts"]) == (pid, 0)


def test_a_session_cookie_without_origin_cannot_post(controlling: Dashboard) -> None:
    body = urlencode({"token": TOKEN}).encode()
    _status, headers, _page = controlling.request("POST", "/login", SAME_ORIGIN_FORM, body, bearer=False)
    session = headers["set-cookie"].split(";")[0]
    status, _headers, _body = controlling.request("POST", "/api/resources/a/restart", {"Cookie": session},
                                                  bearer=False)
    assert status == 403
    status, _headers, _body = controlling.request(
        "POST", "/api/resources/a/restart", {"Cookie": session, "Origin": controlling.origin}, bearer=False
    )
    assert status == 200


def test_a_script_with_a_bearer_token_and_no_origin_may_restart(controlling: Dashboard) -> None:
    pid = running_pid(controlling, "a")
    status, _headers, body = controlling.request("POST", "/api/resources/a/restart")
    assert status == 200 and json.loads(body) == {"ok": True, "message": "restart: a"}
    controlling.wait_resource("a", lambda values: values["pid"] not in (None, pid) and values["state"] == "running")
    status, _headers, body = controlling.request("POST", "/api/resources/a/stop", {"Origin": controlling.origin})
    assert status == 200
    controlling.wait_resource("a", lambda values: values["state"] == "stopped")
    status, _headers, body = controlling.request("POST", "/api/resources/nothere/start")
    assert status == 409 and "unknown resource 'nothere'" in json.loads(body)["message"]
    status, _headers, body = controlling.request("POST", "/api/resources/a/restart", bearer=False)
    assert status == 401


# ---------------------------------------------------------------- TLS


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_with_a_certificate_directory_it_speaks_tls_1_2_or_later(
    host_factory: Callable[..., HostProcess], tmp_path: Path
) -> None:
    pytest.importorskip("cryptography")
    from helpers.certs import make_tls_files

    files = make_tls_files(tmp_path / "pki")
    directory = tmp_path / "dashboard-certs"
    directory.mkdir()
    (directory / "public_certificate.pem").write_bytes(files.server_cert.read_bytes())
    (directory / "private_key.pem").write_bytes(files.server_key.read_bytes())
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    dashboard = start_dashboard(host_factory, tmp_path, RESOURCES, token=True, tls_directory=directory, tls=context)
    assert dashboard.status()["host"] == "sghost"
    body = urlencode({"token": TOKEN}).encode()
    _status, headers, _page = dashboard.request("POST", "/login", SAME_ORIGIN_FORM, body, bearer=False)
    assert "Secure" in headers["set-cookie"]
    old = ssl.create_default_context(cafile=str(files.ca_cert))
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        Dashboard(dashboard.host, dashboard.port, "https", TOKEN, old).status()


# ---------------------------------------------------------------- failures and reload


def test_a_taken_port_is_named_retried_and_supervision_goes_on(
    host_factory: Callable[..., HostProcess], tmp_path: Path
) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        dashboard = start_dashboard(host_factory, tmp_path, RESOURCES, token=True, port=port, wait=False)
        line = dashboard.host.wait_log(f"cannot listen on 127.0.0.1:{port}", timeout=20)
        assert "[dashboard] listen" in line
        dashboard.host.wait_log("dashboard: its process ended (exit code 2); starting it again", timeout=10)
        assert wait_until(lambda: running_over_control(dashboard.host, "a"), 15), "supervision went on"
    finally:
        squatter.close()
    dashboard.host.wait_log(f"listening on http://127.0.0.1:{port}", timeout=20)
    assert dashboard.status()["host"] == "sghost"


def test_wrong_tokens_lock_out_token_checks_for_a_minute_but_not_sessions(read_only: Dashboard) -> None:
    body = urlencode({"token": TOKEN}).encode()
    _status, headers, _page = read_only.request("POST", "/login", SAME_ORIGIN_FORM, body, bearer=False)
    session = headers["set-cookie"].split(";")[0]
    answers = [read_only.request("GET", "/api/status", {"Authorization": "Bearer wrong"})[0] for _ in range(10)]
    assert answers == [401] * 9 + [429]
    status, headers, _body = read_only.request("GET", "/api/status")
    assert status == 429 and headers["retry-after"] == "60"
    assert read_only.request("GET", "/api/status", {"Cookie": session}, bearer=False)[0] == 200
    read_only.host.wait_log("wrong token(s), the last from 127.0.0.1 (logged at most once a minute)")


def test_a_reload_applies_a_changed_dashboard_table(controlling: Dashboard, tmp_path: Path) -> None:
    manifest = controlling.host.manifest
    text = manifest.read_text()
    manifest.write_text(text.replace("control = true", "control = false"))
    assert run_cli("reload", "-c", str(manifest)).returncode == 0
    controlling.host.wait_log(f"listening on http://127.0.0.1:{controlling.port}", count=2, timeout=20)
    assert controlling.request("POST", "/api/resources/a/restart")[0] == 404
    manifest.write_text(text.replace("enabled = true", "enabled = false"))
    assert run_cli("reload", "-c", str(manifest)).returncode == 0
    controlling.host.wait_log("dashboard: off", timeout=20)
    with pytest.raises(ConnectionRefusedError):
        controlling.request("GET", "/api/status")


def test_a_token_file_gone_at_a_restart_is_named_and_supervision_goes_on(read_only: Dashboard, tmp_path: Path) -> None:
    (tmp_path / "dashboard.token").unlink()
    read_only.process().kill()
    line = read_only.host.wait_log("cannot read [dashboard] token_file", timeout=15)
    assert str(tmp_path / "dashboard.token") in line
    assert wait_until(lambda: running_over_control(read_only.host, "a"), 15)


def test_at_most_sixteen_pages_follow_the_events(read_only: Dashboard) -> None:
    followers = []
    try:
        for _ in range(16):
            connection = read_only.connection()
            connection.request("GET", "/api/events", headers={"Authorization": f"Bearer {TOKEN}"})
            response = connection.getresponse()
            assert response.status == 200
            followers.append(response)  # the response holds the stream's socket
        status, headers, body = read_only.request("GET", "/api/events")
        assert status == 503 and headers["retry-after"] == "10"
        assert "too many pages follow this dashboard" in json.loads(body)["error"]
    finally:
        for response in followers:
            response.close()
