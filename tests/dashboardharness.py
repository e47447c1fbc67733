"""sghost with its dashboard on a free loopback port (never 8080), and plain HTTP requests to it."""

from __future__ import annotations

import http.client
import json
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from hostharness import HostProcess, manifest_text, sghost_env, wait_until
from sghost.host.broker import free_port

TOKEN = "dashboard-test-token-0123456789abcdef"
PLUGINS = "sghost_test_plugins,sghost_supervision_plugins,sghost_dashboard_plugins"


@dataclass
class Dashboard:
    host: HostProcess
    port: int
    scheme: str = "http"
    token: str | None = None
    tls: ssl.SSLContext | None = None

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
        bearer: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request; with ``bearer`` (and a token) it carries ``Authorization: Bearer``."""
        sent = dict(headers or {})
        if bearer and self.token and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {self.token}"
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def json(self, path: str, **kwargs: Any) -> Any:
        status, _headers, body = self.request("GET", path, **kwargs)
        assert status == 200, (status, body)
        return json.loads(body)

    def status(self) -> dict[str, Any]:
        return self.json("/api/status")  # type: ignore[no-any-return]

    def resource(self, name: str) -> dict[str, Any]:
        return self.status()["resources"][name]  # type: ignore[no-any-return]

    def wait_resource(self, name: str, condition: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> Any:
        found = wait_until(lambda: (values := self.resource(name)) and condition(values) and values, timeout, 0.2)
        assert found, f"{name} never met the condition: {self.resource(name)}"
        return found

    def process(self) -> psutil.Process:
        """The dashboard's own process: the one of sghost's tree listening on the port."""
        def find() -> psutil.Process | None:
            for process in self.host.descendants():
                try:
                    connections = process.net_connections(kind="tcp")
                except psutil.Error:
                    continue
                if any(c.laddr and c.laddr.port == self.port and c.status == "LISTEN" for c in connections):
                    return process
            return None

        found = wait_until(find, 10.0, 0.1)
        assert found, "no process of sghost's tree listens on the dashboard's port"
        return found  # type: ignore[return-value]


def dashboard_manifest(resources: str, dashboard: str, port: int) -> str:
    broker_port = free_port()
    return manifest_text(None, resources, port=broker_port, broker_extra="embedded = true\n") + (
        f'\n[dashboard]\nenabled = true\nlisten = "127.0.0.1:{port}"\n{dashboard}\n'
    )


def start_dashboard(
    host_factory: Callable[..., HostProcess],
    tmp_path: Path,
    resources: str,
    *,
    token: bool = False,
    control: bool = False,
    tls_directory: Path | None = None,
    tls: ssl.SSLContext | None = None,
    extra: str = "",
    port: int | None = None,
    wait: bool = True,
) -> Dashboard:
    """sghost with an embedded broker, the ``resources`` tables, and its dashboard; waits until it serves."""
    port = port or free_port()
    lines = [f"control = {'true' if control else 'false'}", extra]
    if token:
        token_path = tmp_path / "dashboard.token"
        token_path.write_text(TOKEN + "\n")
        os.chmod(token_path, 0o600)
        lines.append('token_file = "dashboard.token"')
    if tls_directory is not None:
        lines.append(f'certificate_directory = "{tls_directory}"')
    env = sghost_env(PLUGINS)
    host = host_factory(dashboard_manifest(resources, "\n".join(lines), port), env=env)
    scheme = "https" if tls_directory is not None else "http"
    if wait:
        host.wait_log(f"listening on {scheme}://127.0.0.1:{port}", timeout=20)
    return Dashboard(host, port, scheme, TOKEN if token else None, tls)
