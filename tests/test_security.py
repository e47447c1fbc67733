"""Security end to end: the documented mosquitto configuration, real certificates, real hosts.

The broker runs the files in docs/examples/ (mosquitto.conf + acl, mosquitto-password.conf
+ acl-password) with only their /etc/mosquitto/ paths and the listener's port moved into
the test's directory. Every CA, certificate and key is made at test time by ``sghost certs``.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from hostharness import HostProcess, manifest_text, resource_pid, run_cli, wait_health_documents
from sgframework import constants
from sghost.cli import certs
from sghost.host.broker import MosquittoBroker, own_user_line
from sghost.testing import Recorder, certificate_files

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
HOST = "gateway"  # the [host] name the example ACL grants the meta-resource's rights to
RIGHT_PASSWORD = "Right-pw-7c1e9a40"
WRONG_PASSWORD = "Wrong-pw-3f88d2b1"
OPERATOR_PASSWORD = "Operator-pw-51b0e6"

# max_restarts 2 and a long backoff_max: a broken identity goes fatal after 3 quick
# failures and is not retried again within the test.
FAILING_POLICY = "max_restarts = 2\nbackoff_max = 30.0\n"

TWO_RESOURCES = """
[resources.alpha]
type = "echoer"
certificate_directory = "certs/alpha"
[resources.beta]
type = "echoer"
certificate_directory = "certs/beta"
"""


# ---------------------------------------------------------------- the broker from the docs


def render_example(example: str, root: Path, port: int) -> str:
    """The example file with /etc/mosquitto/ replaced by ``root`` and its listener on ``port``."""
    text = (EXAMPLES / example).read_text().replace("/etc/mosquitto/", f"{root}/")
    text, count = re.subn(r"^listener 8883$", f"listener {port} 127.0.0.1", text, flags=re.MULTILINE)
    assert count == 1, f"{example} should have one 'listener 8883' line"
    return text


class ExampleBroker(MosquittoBroker):
    """mosquitto running a configuration from docs/examples/ (plus a log file for the tests)."""

    def __init__(self, example: str, root: Path) -> None:
        super().__init__()
        self.example_text = render_example(example, root, self.port)

    def config_text(self) -> str:
        extra = [f"log_dest file {self.log_path}", "log_type all", "persistence false", own_user_line()]
        return self.example_text + "\n" + "\n".join(extra) + "\n"


def issue(*args: str) -> None:
    assert certs.main(list(args)) == 0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stands for /etc/mosquitto: certs/ (CA, broker, identities), acl files, passwd; and the manifests."""
    root = tmp_path_factory.mktemp("etc-mosquitto")
    directory = str(root / "certs")
    issue("init", "--dir", directory)
    issue("issue", "broker", "--server", "--dir", directory)
    for name in (HOST, "alpha", "beta", "operator", "zeta"):
        issue("issue", name, "--dir", directory)
    for name in ("acl", "acl-password"):
        shutil.copy(EXAMPLES / name, root / name)
    # The tests' host runs other resources than the docs' one: its block is appended the
    # documented way (sghost acl --no-patterns), for the names the tests use.
    fleet = root / "acl-fleet.toml"
    names = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
    fleet.write_text(manifest_text(None, "".join(f'[resources.{name}]\ntype = "echoer"\n' for name in names),
                                   host=HOST, port=8883, broker_extra='certificate_directory = "certs/gateway"'))
    printed = run_cli("acl", "-c", str(fleet), "--no-patterns")
    assert printed.returncode == 0, printed.stderr
    with (root / "acl").open("a") as acl:
        acl.write(printed.stdout)
    return root


@pytest.fixture(scope="module")
def tls_broker(site: Path) -> Iterator[MosquittoBroker]:
    broker = ExampleBroker("mosquitto.conf", site)
    broker.start()
    yield broker
    broker.cleanup()


@pytest.fixture(scope="module")
def password_broker(site: Path) -> Iterator[MosquittoBroker]:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.skip("mosquitto_passwd is not installed (Debian: apt-get install mosquitto-clients)")
    passwd = site / "passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), HOST, RIGHT_PASSWORD], check=True)
    subprocess.run([tool, "-b", str(passwd), "operator", OPERATOR_PASSWORD], check=True)
    broker = ExampleBroker("mosquitto-password.conf", site)
    broker.start()
    yield broker
    broker.cleanup()


def tls_recorder(broker: MosquittoBroker, site: Path, identity: str, topics: str = "#") -> Recorder:
    """A subscriber holding the certificate of ``identity`` (CN = user name for the ACL)."""
    return Recorder(broker.host, broker.port, topics, client_id=f"{identity}-{uuid.uuid4().hex[:8]}",
                    certificate_directory=site / "certs" / identity)


@pytest.fixture
def operator(tls_broker: MosquittoBroker, site: Path, clients: list[Any]) -> Recorder:
    """The operator identity: the ACL lets it read '#'."""
    recorder = tls_recorder(tls_broker, site, "operator").start()
    clients.append(recorder)
    return recorder


def status_json(manifest: Path) -> tuple[dict[str, Any], str]:
    """``sghost status --json``: the parsed document and the raw output."""
    result = run_cli("status", "-c", str(manifest), "--json", "--timeout", "5")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stdout + result.stderr


def key_lines(*directories: Path) -> list[str]:
    """The base64 lines of the private keys in ``directories``: what must never be shown."""
    lines = []
    for directory in directories:
        text = (directory / constants.KEYFILE).read_text()
        lines += [line for line in text.splitlines() if line and not line.startswith("-----")]
    assert lines
    return lines


def assert_no_secret(secrets: list[str], **outputs: str) -> None:
    for where, text in outputs.items():
        flat = text.replace("\n", "").replace("\\n", "")
        for secret in secrets:
            assert secret not in text and secret not in flat, f"a secret appears in {where}"


def health_text(recorder: Recorder) -> str:
    return "\n".join(f"{m.topic} {m.payload}" for m in recorder.messages if m.topic.startswith(f"data/{HOST}/"))


# ---------------------------------------------------------------- the documentation


def test_security_doc_shows_exactly_the_example_files_the_tests_run() -> None:
    doc = (EXAMPLES.parent / "security.md").read_text()
    shown = dict(re.findall(r"<!-- example: docs/examples/(\S+) -->\n```[a-z]*\n(.*?)```", doc, flags=re.DOTALL))
    assert sorted(shown) == sorted(path.name for path in EXAMPLES.iterdir())
    for name, text in shown.items():
        assert text == (EXAMPLES / name).read_text(), f"docs/security.md shows another {name} than docs/examples/"
    for pattern in ("data", "dataavailable", "commandavailable", "resourceavailable"):
        assert f"pattern write {pattern}/%u/#" in shown["acl"]
    assert "pattern read command/%u/#" in shown["acl"]
    assert "require_certificate true" in shown["mosquitto.conf"]
    assert "use_identity_as_username true" in shown["mosquitto.conf"]


# ---------------------------------------------------------------- identities


def test_each_resource_connects_with_its_own_certificate(
    tls_broker: MosquittoBroker, site: Path, operator: Recorder, host_factory: Callable[..., HostProcess]
) -> None:
    text = manifest_text(tls_broker, TWO_RESOURCES, host=HOST, broker_extra='certificate_directory = "certs/gateway"')
    host = host_factory(text, "identities.toml", directory=site)
    for name in ("alpha", "beta", HOST):
        operator.wait_for(f"resourceavailable/{name}/presence", "True", timeout=10)
    for name in ("alpha", "beta"):
        operator.wait_for(f"data/{HOST}/{name}_state", "running")
        # use_identity_as_username: the broker knows each client by its certificate's CN.
        assert re.search(rf"as {name}-\d+ \(.*u'{name}'\)", tls_broker.log_text()), tls_broker.log_text()[-2000:]
    assert re.search(rf"as {HOST}-\d+ \(.*u'{HOST}'\)", tls_broker.log_text())

    # A resource reads its own commands and writes its own data.
    operator.publish("command/alpha/ping", "hello")
    operator.wait_for("data/alpha/ping", "hello")

    # The meta-resource's deliberate privilege: it marks a dead resource's capabilities False.
    first = operator.wait_for("commandavailable/beta/ping", "True")
    psutil.Process(resource_pid(operator, HOST, "beta")).kill()
    operator.wait_for("commandavailable/beta/ping", "False", after=first.at)
    operator.wait_for("commandavailable/beta/ping", "True", after=first.at, timeout=10)

    document, raw_status = status_json(site / "identities.toml")
    assert document["resources"]["alpha"]["state"] == "running"
    secrets = key_lines(*(site / "certs" / name for name in ("alpha", "beta", HOST)))
    assert_no_secret(secrets, log=host.log(), health=health_text(operator), status=raw_status)

    # An operator's fleet view connects with the TLS identity of its own manifest's [broker].
    viewer = site / "operator-view.toml"
    viewer.write_text(
        f'[host]\nname = "viewer"\n[broker]\nhost = "127.0.0.1"\nport = {tls_broker.port}\n'
        'certificate_directory = "certs/operator"\n'
    )
    fleet = run_cli("status", "--all", "-c", str(viewer))
    assert fleet.returncode == 0, fleet.stderr
    assert HOST in fleet.stdout and "alpha" in fleet.stdout and "beta" in fleet.stdout
    plain = run_cli("status", "--all", "--broker", f"127.0.0.1:{tls_broker.port}", "--timeout", "2")
    assert plain.returncode == 1
    assert "sghost status --all:" in plain.stderr
    # Without a manifest, as from an operator's laptop: the identity on the command line.
    flagged = run_cli("status", "--all", "--broker", f"127.0.0.1:{tls_broker.port}",
                      "--certificate-directory", str(site / "certs" / "operator"))
    assert flagged.returncode == 0, flagged.stderr
    assert HOST in flagged.stdout and "alpha" in flagged.stdout


def test_a_client_with_one_identity_cannot_publish_as_another(
    tls_broker: MosquittoBroker, site: Path, operator: Recorder, clients: list[Any]
) -> None:
    outcomes: dict[int, ReasonCode] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"alpha-forger-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    client.on_publish = lambda c, u, mid, reason, props: outcomes.__setitem__(mid, reason)
    directory = site / "certs" / "alpha"
    client.tls_set(*certificate_files(directory))
    client.connect(tls_broker.host, tls_broker.port)
    client.loop_start()
    clients.append(client)

    def publish(topic: str, payload: str, retain: bool = False) -> ReasonCode:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        return outcomes[info.mid]

    # Positive control: the same client's own topics are accepted and seen.
    assert not publish("data/alpha/own", "mine").is_failure
    control = operator.wait_for("data/alpha/own", "mine")  # retained messages from before arrived earlier

    forged = [
        ("data/beta/ping", "forged"),
        ("dataavailable/beta/ping", "False"),
        ("commandavailable/beta/ping", "False"),
        ("resourceavailable/beta/presence", "False"),
        ("command/beta/ping", "forged"),
        ("command/gateway/stop", "beta"),
    ]
    for topic, payload in forged:
        reason = publish(topic, payload, retain=topic.startswith(("dataav", "commandav", "resourceav")))
        assert reason.is_failure and "not authorized" in str(reason).lower(), (topic, str(reason))
    # Messages of one client arrive in order: once this one is seen, the forged ones would have been.
    assert not publish("data/alpha/own", "after").is_failure
    operator.wait_for("data/alpha/own", "after")
    seen = [(m.topic, m.payload) for m in operator.messages if m.at >= control.at and (m.topic, m.payload) in forged]
    assert seen == [], f"the broker let alpha publish as another: {seen}"
    assert "Denied PUBLISH" in tls_broker.log_text()

    # A last will on another's topic is not delivered either (MQTT 5: disconnect with will).
    forger = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"alpha-will-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    forger.tls_set(*certificate_files(directory))
    forger.will_set("resourceavailable/beta/presence", "False", qos=1, retain=True)
    forger.connect(tls_broker.host, tls_broker.port)
    forger.loop_start()
    forger.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
    forger.loop_stop()
    assert not publish("data/alpha/own", "after-will").is_failure
    operator.wait_for("data/alpha/own", "after-will")
    wills = [m for m in operator.on("resourceavailable/beta/presence") if m.at >= control.at]
    assert wills == [], "alpha's will spoke for beta"


# ---------------------------------------------------------------- broken identities


def test_expired_foreign_and_missing_certificates_give_a_clear_error_and_back_off(
    tls_broker: MosquittoBroker, site: Path, operator: Recorder, host_factory: Callable[..., HostProcess]
) -> None:
    # gamma: signed by the right CA but expired 9 days ago.
    expired = site / "expired"
    shutil.copytree(site / "certs" / "ca", expired / "ca")
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    certs.issue_certificate(expired, "gamma", days=1, now=long_ago)
    # delta: another CA altogether (sghost does not trust the broker, the broker not delta).
    other = site / "other"
    issue("init", "--dir", str(other))
    issue("issue", "delta", "--dir", str(other))
    # epsilon: trusts the right CA, but its certificate is signed by another one.
    issue("issue", "epsilon", "--dir", str(other))
    shutil.copy(site / "certs" / "ca" / certs.CA_CERTIFICATE, other / "epsilon" / constants.CA_CERTS)
    resources = "".join(
        f'[resources.{name}]\ntype = "echoer"\ncertificate_directory = "{path}"\n{FAILING_POLICY}'
        for name, path in (("gamma", "expired/gamma"), ("delta", "other/delta"), ("epsilon", "other/epsilon"),
                           ("zeta", "certs/zeta"))
    )
    text = manifest_text(tls_broker, resources, host=HOST, broker_extra='certificate_directory = "certs/gateway"')
    host = host_factory(text, "broken.toml", directory=site)

    # zeta connects, then loses its key (a botched rotation) and is killed: its restarts cannot connect.
    operator.wait_for("resourceavailable/zeta/presence", "True", timeout=10)
    zeta_pid = resource_pid(operator, HOST, "zeta")
    (site / "certs" / "zeta" / constants.KEYFILE).unlink()
    psutil.Process(zeta_pid).kill()

    expected = {  # each its own reason, found before connecting (gamma, epsilon) or in the handshake
        "gamma": "expired on ",
        "delta": "certificate verify failed",
        "epsilon": "is not signed by the CA in",
        "zeta": "private_key.pem",
    }
    fatal = {}
    for name, words in expected.items():
        fatal[name] = operator.wait_for(f"data/{HOST}/{name}_state", "fatal", timeout=15)
        error = operator.latest(f"data/{HOST}/{name}_error") or ""
        assert words in error and "\n" not in error, (name, error)
        host.wait_log(f"[{name}] fatal")
        ended = [line for line in host.log().splitlines() if f"[{name}] pid" in line and words in line]
        assert ended, f"no log line says why {name} ended:\n{host.log()}"

    # Not a restart storm: a few failures, then fatal and nothing more. The barrier: two health
    # documents published after the last "fatal" (any restart would show in them, and as a new state).
    wait_health_documents(operator, HOST, after=max(message.at for message in fatal.values()))
    for name in expected:
        assert [m.payload for m in operator.on(f"data/{HOST}/{name}_state") if m.at >= fatal[name].at] == ["fatal"]
        assert int(operator.latest(f"data/{HOST}/{name}_restarts") or 0) <= 3, name
        document = json.loads(operator.latest(f"data/{HOST}/health") or "{}")
        assert document["resources"][name]["state"] == "fatal", document


# ---------------------------------------------------------------- passwords


def password_manifest(site: Path, broker: MosquittoBroker, name: str, password: str) -> str:
    password_file = site / f"{name}.password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    broker_extra = (
        f'certificate_directory = "certs/{HOST}"\nusername = "{HOST}"\npassword_file = "{password_file.name}"\n'
    )
    # taxisign: the resource of the password example, which docs/examples/acl-password grants
    resources = f'[resources.taxisign]\ntype = "echoer"\n{FAILING_POLICY}'
    return manifest_text(broker, resources, host=HOST, broker_extra=broker_extra)


def password_recorder(broker: MosquittoBroker, site: Path, clients: list[Any]) -> Recorder:
    recorder = Recorder(broker.host, broker.port, "#", client_id=f"operator-{uuid.uuid4().hex[:8]}")
    recorder.client.tls_set(ca_certs=str(site / "certs" / "operator" / constants.CA_CERTS))
    recorder.client.username_pw_set("operator", OPERATOR_PASSWORD)
    recorder.start()
    clients.append(recorder)
    return recorder


def test_wrong_password_goes_fatal_with_the_brokers_reason_and_is_never_shown(
    password_broker: MosquittoBroker, site: Path, host_factory: Callable[..., HostProcess]
) -> None:
    text = password_manifest(site, password_broker, "wrongpw", WRONG_PASSWORD)
    host = host_factory(text, "wrongpw.toml", directory=site)
    host.wait_log("[taxisign] fatal", timeout=8)
    document, raw_status = status_json(site / "wrongpw.toml")
    alpha = document["resources"]["taxisign"]
    assert alpha["state"] == "fatal"
    reason = alpha.get("error") or alpha.get("last_error") or ""
    assert "not authorized" in reason.lower() or "bad user name or password" in reason.lower(), alpha
    assert "check username and password" in reason
    assert_no_secret([WRONG_PASSWORD], log=host.log(), status=raw_status)


def test_right_password_connects_and_is_never_shown(
    password_broker: MosquittoBroker, site: Path, host_factory: Callable[..., HostProcess], clients: list[Any]
) -> None:
    operator = password_recorder(password_broker, site, clients)
    text = password_manifest(site, password_broker, "rightpw", RIGHT_PASSWORD)
    host = host_factory(text, "rightpw.toml", directory=site)
    operator.wait_for("resourceavailable/taxisign/presence", "True", timeout=10)
    operator.wait_for(f"data/{HOST}/taxisign_state", "running")
    operator.wait_for(f"data/{HOST}/health", timeout=5)
    _, raw_status = status_json(site / "rightpw.toml")
    assert_no_secret([RIGHT_PASSWORD], log=host.log(), health=health_text(operator), status=raw_status)


def test_a_group_readable_password_file_is_refused_at_check(site: Path) -> None:
    password_file = site / "loose.password"
    password_file.write_text(RIGHT_PASSWORD + "\n")
    password_file.chmod(0o640)
    manifest = site / "loose.toml"
    manifest.write_text(
        manifest_text(None, "", host=HOST, port=8883,
                      broker_extra=f'username = "{HOST}"\npassword_file = "{password_file.name}"\n')
    )
    result = run_cli("check", "-c", str(manifest))
    assert result.returncode == 2, result
    assert "chmod 600" in result.stderr and "password_file" in result.stderr, result.stderr
    assert RIGHT_PASSWORD not in result.stdout + result.stderr
