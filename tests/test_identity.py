"""Broker identities end to end: the ACL ``sghost acl`` prints, two gateways on one broker, and
certificate errors that say which.

The broker is a real mosquitto TLS listener with ``require_certificate true`` and
``use_identity_as_username true`` whose ACL file is built as docs/security.md says:
the first host's ``sghost acl`` output, each further host's with ``--no-patterns``, then
the operator's block from docs/examples/acl.
"""

from __future__ import annotations

import datetime
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from hostharness import HostProcess, manifest_text, resource_pid, run_cli
from sgframework import constants
from sghost.cli import certs
from sghost.host.broker import MosquittoBroker, own_user_line
from sghost.testing import Recorder, certificate_files

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
FAILING_POLICY = "max_restarts = 2\nbackoff_max = 30.0\n"


def issue(*args: str) -> None:
    assert certs.main(list(args)) == 0


def gateway_manifest(broker: MosquittoBroker | None, host: str, resources: dict[str, str], extra: str = "") -> str:
    tables = "".join(
        f'[resources.{name}]\ntype = "echoer"\ncertificate_directory = "{directory}"\n{extra}'
        for name, directory in resources.items()
    )
    return manifest_text(broker, tables, host=host, port=None if broker else 8883,
                         broker_extra=f'certificate_directory = "certs/{host}"')


def operator_block() -> str:
    """The operator's block, as docs/examples/acl writes it."""
    text = (EXAMPLES / "acl").read_text()
    match = re.search(r"^user operator\n(?:topic .*\n)+", text, flags=re.MULTILINE)
    assert match, "docs/examples/acl has no 'user operator' block"
    return match.group(0)


class IdentityBroker(MosquittoBroker):
    """mosquitto with the docs' TLS listener (docs/examples/mosquitto.conf) and the given ACL file."""

    def __init__(self, site: Path) -> None:
        super().__init__()
        example = (EXAMPLES / "mosquitto.conf").read_text().replace("/etc/mosquitto/", f"{site}/")
        self.example_text = re.sub(r"^listener 8883$", f"listener {self.port} 127.0.0.1", example, flags=re.MULTILINE)

    def config_text(self) -> str:
        extra = [f"log_dest file {self.log_path}", "log_type all", "persistence false", own_user_line()]
        return self.example_text + "\n" + "\n".join(extra) + "\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("identity-site")
    directory = str(root / "certs")
    issue("init", "--dir", directory)
    issue("issue", "broker", "--server", "--dir", directory)
    for name in ("gw1", "gw2", "gw3", "alpha", "beta", "operator"):
        issue("issue", name, "--dir", directory)
    (root / "gw1.toml").write_text(gateway_manifest(None, "gw1", {"alpha": "certs/alpha"}))
    (root / "gw2.toml").write_text(gateway_manifest(None, "gw2", {"beta": "certs/beta"}))
    first = run_cli("acl", "-c", str(root / "gw1.toml"))
    second = run_cli("acl", "-c", str(root / "gw2.toml"), "--no-patterns")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    (root / "acl").write_text(first.stdout + second.stdout + "\n" + operator_block())
    return root


@pytest.fixture(scope="module")
def broker(site: Path) -> Iterator[MosquittoBroker]:
    running = IdentityBroker(site)
    running.start()
    yield running
    running.cleanup()


def tls_files(site: Path, identity: str) -> tuple[str, str, str]:
    return certificate_files(site / "certs" / identity)


@pytest.fixture
def operator(broker: MosquittoBroker, site: Path, clients: list[Any]) -> Recorder:
    recorder = Recorder(broker.host, broker.port, "#", client_id=f"operator-{uuid.uuid4().hex[:8]}",
                        certificate_directory=site / "certs" / "operator")
    clients.append(recorder.start())
    return recorder


class Publisher:
    """A paho MQTT 5 client holding one identity's certificate; ``publish`` returns the broker's PUBACK reason."""

    def __init__(self, broker: MosquittoBroker, site: Path, identity: str) -> None:
        self.outcomes: dict[int, ReasonCode] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{identity}-probe-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_publish = lambda c, u, mid, reason, props: self.outcomes.__setitem__(mid, reason)
        self.client.tls_set(*tls_files(site, identity))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: str, retain: bool = False) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        return self.outcomes[info.mid]

    def disconnect(self) -> None:
        self.client.disconnect()

    def loop_stop(self) -> None:
        self.client.loop_stop()


# ---------------------------------------------------------------- sghost acl


def test_acl_prints_patterns_and_only_the_hosts_own_resources(site: Path) -> None:
    result = run_cli("acl", "-c", str(site / "gw1.toml"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for kind in ("data", "dataavailable", "commandavailable", "resourceavailable"):
        assert f"pattern write {kind}/%u/#" in lines
    assert "pattern read command/%u/#" in lines
    block = lines[lines.index("user gw1") + 1:]
    assert [line for line in block if line.startswith("topic")] == [
        "topic write commandavailable/alpha/#", "topic write dataavailable/alpha/#",
    ]
    assert "+" not in result.stdout, "no wildcard over other hosts' resources"
    bare = run_cli("acl", "-c", str(site / "gw2.toml"), "--no-patterns")
    assert "pattern" not in bare.stdout.replace("pattern lines", "") and "user gw2" in bare.stdout


def test_acl_for_passwords_gives_the_gateway_user_its_own_topics_only(tmp_path: Path) -> None:
    manifest = tmp_path / "gw.toml"
    manifest.write_text(
        '[host]\nname = "gw7"\n[broker]\nport = 8883\nusername = "gw7"\n'
        '[resources.taxisign]\ntype = "echoer"\n[resources.climate]\ntype = "echoer"\n'
    )
    result = run_cli("acl", "-c", str(manifest), "--no-patterns")
    assert result.returncode == 0, result.stderr
    topics = [line for line in result.stdout.splitlines() if line.startswith("topic")]
    assert "topic write data/taxisign/#" in topics and "topic read command/climate/#" in topics
    assert "topic write resourceavailable/gw7/#" in topics
    assert all(re.fullmatch(r"topic (read|write) \w+/(gw7|taxisign|climate)/#", line) for line in topics), topics
    no_user = tmp_path / "nouser.toml"
    no_user.write_text('[host]\nname = "gw8"\n')
    refused = run_cli("acl", "-c", str(no_user), "--passwords")
    assert refused.returncode == 2 and "broker.username" in refused.stderr


def test_two_gateways_on_one_broker_cannot_touch_each_others_topics(
    broker: MosquittoBroker, site: Path, operator: Recorder, host_factory: Callable[..., HostProcess],
    clients: list[Any],
) -> None:
    host_factory(gateway_manifest(broker, "gw1", {"alpha": "certs/alpha"}), "run-gw1.toml", directory=site)
    host_factory(gateway_manifest(broker, "gw2", {"beta": "certs/beta"}), "run-gw2.toml", directory=site)
    for name in ("alpha", "beta", "gw1", "gw2"):
        operator.wait_for(f"resourceavailable/{name}/presence", "True", timeout=10)
    operator.wait_for("data/gw1/alpha_state", "running")
    operator.wait_for("data/gw2/beta_state", "running")

    # The meta-resource still withdraws its own resource's capabilities when it dies.
    first = operator.wait_for("commandavailable/alpha/ping", "True")
    psutil.Process(resource_pid(operator, "gw1", "alpha")).kill()
    operator.wait_for("commandavailable/alpha/ping", "False", after=first.at)

    alpha = Publisher(broker, site, "alpha")
    gw1 = Publisher(broker, site, "gw1")
    clients += [alpha, gw1]
    assert not alpha.publish("data/alpha/own", "mine").is_failure  # positive controls
    assert not gw1.publish("commandavailable/alpha/probe", "True", retain=True).is_failure
    control = operator.wait_for("commandavailable/alpha/probe", "True")
    forged = {
        alpha: [("data/beta/ping", "forged"), ("resourceavailable/beta/presence", "False"),
                ("command/beta/ping", "forged"), ("data/gw2/beta_state", "fatal")],
        gw1: [("commandavailable/beta/ping", "False"), ("dataavailable/beta/x", "False"),
              ("resourceavailable/gw2/presence", "False"), ("data/gw2/beta_state", "fatal"),
              ("command/gw2/stop", "beta"), ("data/beta/ping", "forged")],
    }
    for client, attempts in forged.items():
        for topic, payload in attempts:
            reason = client.publish(topic, payload, retain="available/" in topic)
            assert reason.is_failure and "not authorized" in str(reason).lower(), (topic, str(reason))
    # One client's messages arrive in order: once these are seen, the forged ones would have been.
    assert not alpha.publish("data/alpha/own", "after").is_failure
    assert not gw1.publish("commandavailable/alpha/probe", "after", retain=True).is_failure
    operator.wait_for("data/alpha/own", "after")
    operator.wait_for("commandavailable/alpha/probe", "after")
    all_forged = {pair for attempts in forged.values() for pair in attempts}
    seen = [(m.topic, m.payload) for m in operator.messages
            if m.at >= control.at and (m.topic, m.payload) in all_forged]
    assert seen == [], f"the broker let one gateway touch the other's topics: {seen}"
    gw1.publish("commandavailable/alpha/probe", "", retain=True)


# ---------------------------------------------------------------- sghost check


def write_manifest(site: Path, name: str, text: str) -> Path:
    path = site / f"{name}.toml"
    path.write_text(text)
    return path


def test_check_warns_about_tls_insecure_and_a_resource_speaking_as_the_host(site: Path) -> None:
    text = manifest_text(None, '[resources.shared]\ntype = "echoer"\n', host="gw1", port=8883,
                         broker_extra='certificate_directory = "certs/gw1"\ntls_insecure = true')
    result = run_cli("check", "-c", str(write_manifest(site, "loose", text)))
    assert result.returncode == 0, result.stderr
    assert re.search(r"warning: .*broker\.tls_insecure: true", result.stderr), result.stderr
    warning = [line for line in result.stderr.splitlines() if "resources.shared.certificate_directory" in line]
    assert warning and warning[0].startswith("warning: ") and "command/gw1/#" in warning[0], result.stderr
    strict = text.replace("tls_insecure = true", "require_resource_identity = true")
    refused = run_cli("check", "-c", str(write_manifest(site, "strict", strict)))
    assert refused.returncode == 2
    assert "resources.shared.certificate_directory: missing with [broker] require_resource_identity" in refused.stderr


@pytest.fixture(scope="module")
def broken(site: Path) -> dict[str, str]:
    """Certificate directories each broken in one way; name -> directory relative to the site."""
    now = datetime.datetime.now(datetime.UTC)
    expired = site / "expired"
    shutil.copytree(site / "certs" / "ca", expired / "ca")
    certs.issue_certificate(expired, "gamma", days=1, now=now - datetime.timedelta(days=10))
    future = site / "future"
    shutil.copytree(site / "certs" / "ca", future / "ca")
    certs.issue_certificate(future, "eta", days=30, now=now + datetime.timedelta(days=3))
    other = site / "other"
    issue("init", "--dir", str(other))  # the same CN as the right CA ("sghost CA"): only signatures tell
    issue("issue", "epsilon", "--dir", str(other))
    shutil.copy(site / "certs" / "ca" / certs.CA_CERTIFICATE, other / "epsilon" / constants.CA_CERTS)
    issue("issue", "iota", "--dir", str(other))  # trusts both CAs, as during a rotation: fine locally
    authorities = [site / "certs" / "ca", other / "ca"]
    bundle = "".join((directory / certs.CA_CERTIFICATE).read_text() for directory in authorities)
    (other / "iota" / constants.CA_CERTS).write_text(bundle)
    mismatched = site / "mismatched"
    shutil.copytree(site / "certs" / "alpha", mismatched)
    shutil.copy(site / "certs" / "beta" / constants.KEYFILE, mismatched / constants.KEYFILE)
    return {"gamma": "expired/gamma", "eta": "future/eta", "epsilon": "other/epsilon", "theta": "mismatched",
            "iota": "other/iota"}


def test_check_says_which_certificate_problem(site: Path, broken: dict[str, str]) -> None:
    text = gateway_manifest(None, "gw3", broken)
    result = run_cli("check", "-c", str(write_manifest(site, "check-broken", text)))
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()

    def line_for(name: str) -> str:
        found = [line for line in lines if f"resources.{name}.certificate_directory" in line]
        assert len(found) == 1, (name, result.stderr)
        return found[0]

    assert re.search(r"expired on \d{4}-\d\d-\d\d \d\d:\d\d UTC$", line_for("gamma"))
    assert line_for("eta").startswith("warning: ") and "not yet valid until" in line_for("eta")
    assert f"not signed by the CA in {site / 'other' / 'epsilon'}" in line_for("epsilon")
    assert "does not match the certificate" in line_for("theta")
    assert not [line for line in lines if "resources.iota" in line], "a CA file holding several CAs is fine"
    future_only = write_manifest(site, "check-future", gateway_manifest(None, "gw3", {"eta": broken["eta"]}))
    alone = run_cli("check", "-c", str(future_only))
    assert alone.returncode == 0, alone.stderr  # not yet valid is only a warning


def test_each_certificate_problem_is_its_own_error_at_run_time(
    broker: MosquittoBroker, site: Path, broken: dict[str, str], operator: Recorder,
    host_factory: Callable[..., HostProcess],
) -> None:
    text = gateway_manifest(broker, "gw3", broken, extra=FAILING_POLICY) + '[resources.shared]\ntype = "echoer"\n'
    host = host_factory(text, "run-broken.toml", directory=site)
    warning = host.wait_log("resources.shared.certificate_directory: not set")
    assert "WARNING" in warning and "command/gw3/#" in warning, warning
    expected = {
        "gamma": r"certificate \S+ expired on \d{4}-\d\d-\d\d",
        "epsilon": r"not signed by the CA in \S+other/epsilon",
        "theta": r"key \S+ does not match the certificate",
        # Checked before connecting, they pass; the broker's TLS alert says why it refused them.
        "iota": r"TLSV1_ALERT_UNKNOWN_CA.*does not trust the CA",
        "eta": r"refused the TLS handshake: SSLV3_ALERT_BAD_CERTIFICATE",  # not yet valid, by the broker too
    }
    for name, pattern in expected.items():
        operator.wait_for(f"data/gw3/{name}_state", "fatal", timeout=20)
        error = operator.latest(f"data/gw3/{name}_error") or ""
        assert re.search(pattern, error) and "\n" not in error, (name, error, host.log()[-3000:])


def test_certs_without_cryptography_says_what_to_install(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from sghost.cli.main import main\n"
        f"sys.exit(main(['certs', 'init', '--dir', {str(tmp_path)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [certs.MISSING_CRYPTOGRAPHY], result.stderr
    assert "sghost[certs]" in result.stderr


def test_without_the_date_decoder_the_handshake_still_says_expired(
    broken: dict[str, str], site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    from sghost.config.certificates import EXPIRED, inspect_directory

    monkeypatch.delattr(ssl._ssl, "_test_decode_cert")  # a Python without CPython's private decoder
    problems = inspect_directory(site / broken["gamma"])
    assert [problem.kind for problem in problems] == [EXPIRED], problems
    assert "has expired" in problems[0].text
    assert [problem.kind for problem in inspect_directory(site / broken["iota"])] == []
