"""``sghost deploy keygen|sign|push|rollout``: files, documents and exit codes, against a real mosquitto.

The gateway is played by :class:`ScriptedGateway` (tests/helpers/scripted_gateway.py) until the gateway
side is merged; it publishes the progress documents a gateway would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from helpers.certs import make_tls_files
from helpers.scripted_gateway import APPLIED, ROLLED_BACK, ScriptedGateway

from sghost.deploy import document
from sghost.host.broker import AmqttBroker, MosquittoBroker, find_amqtt, free_port
from sghost.testing import Recorder

SHA = "0" * 64
MANIFEST = '[host]\nname = "gw1"\n\n[resources.door]\ntype = "doorsensor"\n# größe\n'
TEMPLATE = '[host]\nname = "{host}"\n\n[resources.door]\ntype = "doorsensor"\n'


def sghost(*args: str | Path, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    preexec = (lambda: os.umask(umask)) if umask is not None else None  # type: ignore[func-returns-value]
    return subprocess.run(
        [sys.executable, "-m", "sghost", *map(str, args)], capture_output=True, text=True, timeout=60,
        preexec_fn=preexec,
    )


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A directory holding fleet.key and fleet.pub made by ``sghost deploy keygen``."""
    result = sghost("deploy", "keygen", tmp_path / "keys")
    assert result.returncode == 0, result.stderr
    return tmp_path / "keys"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "gw1.toml"
    path.write_text(MANIFEST, encoding="utf-8")
    return path


@pytest.fixture
def gateways(fresh_mosquitto: MosquittoBroker) -> Iterator[Callable[..., ScriptedGateway]]:
    """``gateways(host, script=..., prefix=..., trusted_keys=...)`` starts a scripted gateway on the test's broker."""
    started: list[ScriptedGateway] = []

    def make(host: str, **options: Any) -> ScriptedGateway:
        gateway = ScriptedGateway(fresh_mosquitto, host, **options).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


def public_key(keys: Path) -> Ed25519PublicKey:
    return document.load_public_key(keys / "fleet.pub")


def sign(keys: Path, manifest: Path, output: Path, *extra: str | Path, host: str = "gw1") -> Path:
    result = sghost("deploy", "sign", "--key", keys / "fleet.key", "--host", host, *extra, manifest, "-o", output)
    assert result.returncode == 0, result.stderr
    return output


def broker_address(broker: MosquittoBroker) -> str:
    return f"{broker.host}:{broker.port}"


def state_lines(stdout: str, host: str = "gw1") -> list[str]:
    """The state names push printed for ``host``, in order (lines ``host: state (...)``)."""
    states = []
    for line in stdout.splitlines():
        name, _, rest = line.partition(": ")
        if name == host and not rest.startswith("pushing"):
            states.append(rest.split(" ")[0].rstrip(":"))
    return states


def barrier(recorder: Recorder, topic: str) -> None:
    """Every message published before this call has reached ``recorder`` once this returns."""
    recorder.publish(topic, "barrier")
    recorder.wait_for(topic, "barrier")


def test_deploy_without_an_action_or_cryptography_says_what_to_do(tmp_path: Path) -> None:
    result = sghost("deploy")
    assert result.returncode == 2
    assert "keygen" in result.stderr and "rollout" in result.stderr
    for action in (["keygen", str(tmp_path / "k")], ["sign", "--key", "k", "--host", "gw1", "m", "-o", "o"],
                   ["rollout", "--key", "k", "--hosts", "gw1", "--broker", "localhost", "m"]):
        code = (
            "import sys; sys.modules['cryptography'] = None\n"
            "from sghost.cli.main import main\n"
            f"sys.exit(main(['deploy', *{action!r}]))\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, (action, result.stderr)
        assert f"sghost deploy {action[0]}: deployments need the 'cryptography' package: " \
               "pip install 'sghost[deploy]'" in result.stderr
    assert not (tmp_path / "k").exists()


# ---------------------------------------------------------------------------
# keygen


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_public_key(tmp_path: Path) -> None:
    result = sghost("deploy", "keygen", tmp_path / "fleet", umask=0)
    assert result.returncode == 0, result.stderr
    key_path, public_path = tmp_path / "fleet" / "fleet.key", tmp_path / "fleet" / "fleet.pub"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600  # even with umask 0
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    assert key_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert public_path.read_text().startswith("-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    public = serialization.load_pem_public_key(public_path.read_bytes())
    assert public == key.public_key()
    assert "fleet.key" in result.stdout and "trusted_keys" in result.stdout


def test_keygen_refuses_to_overwrite_a_key(keys: Path) -> None:
    before = {name: (keys / name).read_bytes() for name in ("fleet.key", "fleet.pub")}
    result = sghost("deploy", "keygen", keys)
    assert result.returncode == 2
    assert f"{keys / 'fleet.key'} exists: refusing to overwrite the fleet key" in result.stderr
    assert {name: (keys / name).read_bytes() for name in before} == before
    (keys / "fleet.key").unlink()  # a lone public key is not replaced either
    result = sghost("deploy", "keygen", keys)
    assert result.returncode == 2
    assert f"{keys / 'fleet.pub'} exists" in result.stderr
    assert not (keys / "fleet.key").exists()


# ---------------------------------------------------------------------------
# sign


def test_a_signed_document_verifies_with_fleet_pub(keys: Path, manifest: Path, tmp_path: Path) -> None:
    before = time.time_ns() // 1_000_000
    output = sign(keys, manifest, tmp_path / "gw1.json")
    after = time.time_ns() // 1_000_000
    signed = document.parse(output.read_bytes())
    document.verify(signed, [public_key(keys)])
    assert (signed.host, signed.manifest, signed.requirements) == ("gw1", MANIFEST, ())
    assert before <= signed.sequence <= after  # default: the signing time in ms
    fields = json.loads(output.read_text(encoding="utf-8"))
    assert set(fields) == {"host", "sequence", "manifest", "requirements", "signature"}


def test_sign_with_sequence_and_requirements(keys: Path, manifest: Path, tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# pinned by pip-compile\n"
        f"sghost-doorsensor==0.2.0 \\\n    --hash=sha256:{SHA}\n\nsghost-canbus==1.0 --hash=sha256:{SHA}\n"
    )
    output = sign(keys, manifest, tmp_path / "gw1.json", "--sequence", "42", "--requirements", requirements)
    signed = document.parse(output.read_bytes())
    document.verify(signed, [public_key(keys)])
    assert signed.sequence == 42
    assert signed.requirements == (
        f"sghost-doorsensor==0.2.0 --hash=sha256:{SHA}", f"sghost-canbus==1.0 --hash=sha256:{SHA}"
    )


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("sghost-canbus==0.2.0\n", ":1: 'sghost-canbus==0.2.0' has no --hash=sha256:"),
        (f"# ok\nsghost-canbus --hash=sha256:{SHA}\n", ":2: 'sghost-canbus' does not pin one version"),
        ("--extra-index-url https://example.org\n", ":1: pip option '--extra-index-url' is not allowed"),
    ],
)
def test_sign_refuses_requirements_that_are_not_pinned_with_hashes(
    keys: Path, manifest: Path, tmp_path: Path, lines: str, message: str
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(lines)
    output = tmp_path / "gw1.json"
    result = sghost("deploy", "sign", "--key", keys / "fleet.key", "--host", "gw1", "--requirements", requirements,
                    manifest, "-o", output)
    assert result.returncode == 2
    assert f"sghost deploy sign: {requirements}{message}" in result.stderr
    assert "expected 'name==version --hash=sha256:" in result.stderr
    assert not output.exists()


def test_sign_refuses_bad_input(keys: Path, manifest: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    big = tmp_path / "big.toml"
    big.write_text('[host]\nname = "gw1"\n' + "#" * (1024 * 1024) + "\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("[host\n")
    other_key = tmp_path / "other.key"
    other_key.write_text("not a key")
    cases = {
        ("--host", "gw2", manifest): f"{manifest}: [host] name is 'gw1' but the document is for host 'gw2'",
        ("--host", "gw1", big): "at most 1048576 (1 MiB) are accepted",
        ("--host", "gw1", broken): f"{broken}: not a valid TOML manifest",
        ("--host", "gw1", tmp_path / "missing.toml"): f"{tmp_path / 'missing.toml'}: cannot read the manifest",
        ("--host", "gw/1", manifest): "--host: The host name 'gw/1' contains '/'",
        ("--host", "gw1", "--sequence", "-1", manifest): "--sequence -1: expected a non-negative integer",
    }
    for args, message in cases.items():
        result = sghost("deploy", "sign", "--key", keys / "fleet.key", *args, "-o", output)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    other_key.chmod(0o600)
    result = sghost("deploy", "sign", "--key", other_key, "--host", "gw1", manifest, "-o", output)
    assert result.returncode == 2
    assert f"{other_key}: not an unencrypted PEM private key" in result.stderr
    (keys / "fleet.key").chmod(0o640)
    result = sghost("deploy", "sign", "--key", keys / "fleet.key", "--host", "gw1", manifest, "-o", output)
    assert result.returncode == 2
    assert f"{keys / 'fleet.key'}: the fleet key is readable or writable by group or others (mode 0640); " \
           f"expected mode 0600: run chmod 600 {keys / 'fleet.key'}" in result.stderr
    assert not output.exists()


# ---------------------------------------------------------------------------
# push


def test_push_follows_every_state_to_successful(
    keys: Path, manifest: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker,
    gateways: Callable[..., ScriptedGateway], mqtt_recorder: Callable[..., Recorder],
) -> None:
    # The scripted gateway answers at once, in a burst: only a push that subscribed
    # before it published sees every state, not just the last retained one.
    gateway = gateways("gw1", trusted_keys=[public_key(keys)])
    output = sign(keys, manifest, tmp_path / "gw1.json")
    result = sghost("deploy", "push", output, "--broker", broker_address(fresh_mosquitto), "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert state_lines(result.stdout) == list(APPLIED)
    signed = document.parse(output.read_bytes())
    assert f"gw1: pushing deployment {signed.id}" in result.stdout
    assert "generation 2" in result.stdout.splitlines()[-1]
    assert [received.id for received in gateway.wait_for_documents(1)] == [signed.id]
    recorder = mqtt_recorder(fresh_mosquitto, "command/gw1/deploy")
    retained = recorder.wait_for("command/gw1/deploy", retain=True)
    assert json.loads(retained.payload) == json.loads(output.read_text(encoding="utf-8"))
    assert retained.qos == 1
    # The same document pushed again: the gateway ignores it; its retained state answers.
    again = sghost("deploy", "push", output, "--broker", broker_address(fresh_mosquitto), "--timeout", "20")
    assert again.returncode == 0, again.stdout + again.stderr
    assert state_lines(again.stdout) == ["successful"]


@pytest.mark.parametrize(
    "script", [("received", "rejected"), ("received", "installing", "failed"), ROLLED_BACK],
    ids=["rejected", "failed", "rolled-back"],
)
def test_push_exits_1_when_the_deployment_does_not_succeed(
    keys: Path, manifest: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker,
    gateways: Callable[..., ScriptedGateway], script: tuple[str, ...],
) -> None:
    gateways("gw1", script=script, reason='resource "door": exit code 1')
    output = sign(keys, manifest, tmp_path / "gw1.json")
    result = sghost("deploy", "push", output, "--broker", broker_address(fresh_mosquitto), "--timeout", "20")
    assert result.returncode == 1, result.stdout + result.stderr
    assert state_lines(result.stdout) == list(script)
    assert result.stdout.splitlines()[-1].endswith(': resource "door": exit code 1')


def test_a_document_signed_by_another_key_is_rejected_by_the_scripted_gateway(
    keys: Path, manifest: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker,
    gateways: Callable[..., ScriptedGateway],
) -> None:
    # The gateway stand-in trusts another key; the CLI reports its rejection with the reason.
    gateways("gw1", trusted_keys=[Ed25519PrivateKey.generate().public_key()])
    output = sign(keys, manifest, tmp_path / "gw1.json")
    result = sghost("deploy", "push", output, "--broker", broker_address(fresh_mosquitto), "--timeout", "20")
    assert result.returncode == 1
    assert "gw1: rejected (generation 1" in result.stdout
    assert "does not match any trusted key" in result.stdout


def test_push_ignores_the_retained_state_of_an_older_deployment_and_times_out(
    keys: Path, manifest: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker,
    gateways: Callable[..., ScriptedGateway], mqtt_recorder: Callable[..., Recorder],
) -> None:
    def garbage(received: document.Deployment) -> None:
        for _ in range(3):
            gateway.client.publish("data/gw1/deployment", "garbage", qos=1)

    # receives, but never answers (as if offline behind its uplink), apart from noise on the state topic
    gateway = gateways("gw1", script=(), on_document=garbage)
    observer = mqtt_recorder(fresh_mosquitto, "data/gw1/deployment")
    gateway.publish_state("0123456789ab", 1, "successful")
    observer.wait_for("data/gw1/deployment")
    output = sign(keys, manifest, tmp_path / "gw1.json")
    result = sghost("deploy", "push", output, "--broker", broker_address(fresh_mosquitto), "--timeout", "3")
    assert result.returncode == 3, result.stdout + result.stderr
    assert state_lines(result.stdout) == []
    assert "gw1: no final state within 3 s (last state: none)" in result.stderr
    assert "stays retained on command/gw1/deploy" in result.stderr
    assert len(gateway.wait_for_documents(1)) == 1
    assert result.stderr.count("ignored a message on data/gw1/deployment that is not a progress document") == 1


def test_push_with_a_prefix(
    keys: Path, manifest: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker,
    gateways: Callable[..., ScriptedGateway],
) -> None:
    gateway = gateways("gw1", prefix="gateways/gw1/")
    output = sign(keys, manifest, tmp_path / "gw1.json")
    result = sghost("deploy", "push", output, "--broker", broker_address(fresh_mosquitto), "--prefix", "gateways/gw1/",
                    "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "on gateways/gw1/command/gw1/deploy" in result.stdout
    assert len(gateway.wait_for_documents(1)) == 1


def test_push_refuses_a_document_over_one_mebibyte(
    keys: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    recorder = mqtt_recorder(fresh_mosquitto, "command/#")
    key = document.load_private_key(keys / "fleet.key")
    signed = document.sign({"host": "gw1", "sequence": 1, "manifest": "#", "requirements": []}, key)
    fields = json.loads(signed.to_json())
    fields["manifest"] = "#" * (1024 * 1024)  # as another tool might make it; sign would refuse it
    big = tmp_path / "big.json"
    big.write_text(json.dumps(fields))
    result = sghost("deploy", "push", big, "--broker", broker_address(fresh_mosquitto))
    assert result.returncode == 2
    assert f"{big}: document is {big.stat().st_size} bytes; at most 1048576 (1 MiB) are accepted" in result.stderr
    barrier(recorder, "command/gw1/barrier")
    assert recorder.on("command/gw1/deploy") == []


def test_push_refuses_bad_input_before_touching_the_broker(tmp_path: Path, keys: Path, manifest: Path) -> None:
    output = sign(keys, manifest, tmp_path / "gw1.json")
    not_json = tmp_path / "notjson.json"
    not_json.write_text("{")
    broker = f"127.0.0.1:{free_port()}"
    cases = {
        (not_json, "--broker", broker): f"{not_json}: document is not JSON",
        (tmp_path / "none.json", "--broker", broker): "cannot read the document",
        (output, "--broker", "host:port"): "--broker 'host:port': port 'port' is not a number",
        (output, "--broker", broker, "--prefix", "gateways/+/"): "--prefix 'gateways/+/': expected topic levels",
        (output, "--broker", broker, "--password-file", tmp_path / "pw"): "--password-file needs --username",
        (output, "--broker", broker, "--timeout", "0"): "--timeout 0: expected a number of seconds above 0",
    }
    for args, message in cases.items():
        result = sghost("deploy", "push", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert f"sghost deploy push: {message}" in result.stderr or message in result.stderr, (args, result.stderr)


def test_push_refuses_a_document_whose_host_is_no_topic_level(tmp_path: Path, keys: Path) -> None:
    key = document.load_private_key(keys / "fleet.key")
    wild = tmp_path / "wild.json"
    wild.write_text(document.sign({"host": "gw/+", "sequence": 1, "manifest": "", "requirements": []}, key).to_json())
    result = sghost("deploy", "push", wild, "--broker", f"127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert f"sghost deploy push: {wild}: The document's host 'gw/+' contains '/', '+'" in result.stderr


def test_push_without_a_broker_exits_4(tmp_path: Path, keys: Path, manifest: Path) -> None:
    output = sign(keys, manifest, tmp_path / "gw1.json")
    port = free_port()
    result = sghost("deploy", "push", output, "--broker", f"127.0.0.1:{port}", "--timeout", "5")
    assert result.returncode == 4
    assert f"cannot connect to the broker 127.0.0.1:{port}" in result.stderr


def test_push_reports_a_broker_that_refuses_the_document(tmp_path: Path, keys: Path, manifest: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n")  # anonymous clients may read, not publish
    with MosquittoBroker(extra_config=[f"acl_file {acl}"]) as broker:
        output = sign(keys, manifest, tmp_path / "gw1.json")
        result = sghost("deploy", "push", output, "--broker", broker_address(broker), "--timeout", "10")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "the broker refused the document on command/gw1/deploy: Not authorized" in result.stderr


def test_push_reports_a_lost_connection(
    keys: Path, manifest: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker,
    gateways: Callable[..., ScriptedGateway],
) -> None:
    # The broker goes away once the gateway has the document, before any state.
    gateways("gw1", script=("received",), on_document=lambda received: fresh_mosquitto.stop())
    output = sign(keys, manifest, tmp_path / "gw1.json")
    result = sghost("deploy", "push", output, "--broker", broker_address(fresh_mosquitto), "--timeout", "20")
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"lost the connection to the broker {broker_address(fresh_mosquitto)}" in result.stderr


def test_push_over_tls_with_a_password(
    keys: Path, manifest: Path, tmp_path: Path, clients: list[Any]
) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.skip("mosquitto_passwd is not installed (Debian: apt-get install mosquitto-clients)")
    tls = make_tls_files(tmp_path / "tls")
    passwd = tmp_path / "passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), "operator", "s3cret-operator"], check=True)
    password_file = tmp_path / "operator.password"
    password_file.write_text("s3cret-operator\n")
    password_file.chmod(0o600)
    wrong_file = tmp_path / "wrong.password"
    wrong_file.write_text("Xyz-not-it\n")
    wrong_file.chmod(0o600)

    def as_operator(client: Any) -> None:
        client.tls_set(ca_certs=str(tls.client_dir / "ca_public_certificate.pem"),
                       certfile=str(tls.client_dir / "public_certificate.pem"),
                       keyfile=str(tls.client_dir / "private_key.pem"))
        client.username_pw_set("operator", "s3cret-operator")

    output = sign(keys, manifest, tmp_path / "gw1.json")
    config = [*tls.broker_config(), f"password_file {passwd}"]
    with MosquittoBroker(extra_config=config, allow_anonymous=False) as broker:
        gateway = ScriptedGateway(broker, "gw1", client_setup=as_operator).start()
        clients.append(gateway.client)
        credentials = ("--certificate-directory", tls.client_dir, "--username", "operator")
        result = sghost("deploy", "push", output, "--broker", broker_address(broker), *credentials,
                        "--password-file", password_file, "--timeout", "20")
        assert result.returncode == 0, result.stdout + result.stderr
        assert state_lines(result.stdout) == list(APPLIED)
        refused = sghost("deploy", "push", output, "--broker", broker_address(broker), *credentials,
                         "--password-file", wrong_file, "--timeout", "20")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "the broker refused the connection" in refused.stderr
        assert "Xyz-not-it" not in refused.stderr + refused.stdout
        plain = sghost("deploy", "push", output, "--broker", broker_address(broker), "--timeout", "5")
        assert plain.returncode == 4, plain.stdout + plain.stderr


def test_push_through_a_broker_that_speaks_only_mqtt_3_1_1(
    keys: Path, manifest: Path, tmp_path: Path, clients: list[Any]
) -> None:
    executable = find_amqtt()
    if executable is None:
        pytest.skip("amqtt is not installed (pip install amqtt)")
    broker = AmqttBroker(executable, free_port(), tmp_path)
    broker.start()
    try:
        gateway = ScriptedGateway(broker, "gw1").start()
        clients.append(gateway.client)
        output = sign(keys, manifest, tmp_path / "gw1.json")
        result = sghost("deploy", "push", output, "--broker", f"{broker.host}:{broker.port}", "--timeout", "20")
    finally:
        broker.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert state_lines(result.stdout) == list(APPLIED)
    assert f"the broker {broker.host}:{broker.port} does not speak MQTT 5; using MQTT 3.1.1" in result.stderr


# ---------------------------------------------------------------------------
# rollout


def rollout(keys: Path, template: Path, broker: MosquittoBroker, *options: str) -> subprocess.CompletedProcess[str]:
    return sghost("deploy", "rollout", "--key", keys / "fleet.key", "--prefix-template", "gateways/{host}/",
                  "--broker", broker_address(broker), "--timeout", "20", *options, template)


def table(stdout: str) -> dict[str, list[str]]:
    """The rollout's final table: host -> [state, generation, id, reason]."""
    lines = stdout.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("HOST "))
    return {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in lines[start + 1 :])}


def test_rollout_stops_after_the_first_failure_and_leaves_the_others_untouched(
    keys: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker,
    gateways: Callable[..., ScriptedGateway], mqtt_recorder: Callable[..., Recorder],
) -> None:
    template = tmp_path / "template.toml"
    template.write_text(TEMPLATE)
    recorder = mqtt_recorder(fresh_mosquitto, "gateways/#")
    first = gateways("gw1", prefix="gateways/gw1/", script=ROLLED_BACK, reason='resource "door": exit code 1')
    others = [gateways(host, prefix=f"gateways/{host}/") for host in ("gw2", "gw3")]
    result = rollout(keys, template, fresh_mosquitto, "--hosts", "gw1,gw2,gw3", "--batch", "1", "--max-failed", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = table(result.stdout)
    assert rows["gw1"][0] == "rolled-back"
    assert rows["gw1"][3] == 'resource "door": exit code 1'
    assert rows["gw2"] == ["not started", "-", "-", "-"]
    assert rows["gw3"] == ["not started", "-", "-", "-"]
    assert len(first.wait_for_documents(1)) == 1
    barrier(recorder, "gateways/barrier")
    for host in ("gw2", "gw3"):
        assert recorder.on(f"gateways/{host}/command/{host}/deploy") == []
    # and nothing retained for them either, for a gateway that connects later
    late = mqtt_recorder(fresh_mosquitto, ["gateways/+/command/+/deploy", "gateways/late/barrier"])
    barrier(late, "gateways/late/barrier")
    assert [message.topic for message in late.messages if message.topic.endswith("/deploy")] == [
        "gateways/gw1/command/gw1/deploy"
    ]
    assert all(gateway.documents == [] for gateway in others)


def test_rollout_signs_one_document_per_host_and_runs_batches_in_parallel(
    keys: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker, gateways: Callable[..., ScriptedGateway],
) -> None:
    template = tmp_path / "template.toml"
    template.write_text(TEMPLATE)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"sghost-doorsensor==0.2.0 --hash=sha256:{SHA}\n")
    hosts = ["gw1", "gw2", "gw3"]
    started = {host: gateways(host, prefix=f"gateways/{host}/", trusted_keys=[public_key(keys)]) for host in hosts}
    result = rollout(keys, template, fresh_mosquitto, "--hosts", ",".join(hosts), "--batch", "2", "--max-failed", "0",
                     "--requirements", str(requirements))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result.stdout)
    for host in hosts:
        (received,) = started[host].wait_for_documents(1)
        document.verify(received, [public_key(keys)])
        assert received.host == host
        assert received.manifest == TEMPLATE.replace("{host}", host)
        assert received.requirements == (f"sghost-doorsensor==0.2.0 --hash=sha256:{SHA}",)
        assert rows[host] == ["successful", "2", received.id, "-"]
        assert state_lines(result.stdout, host) == list(APPLIED)


def test_rollout_counts_a_timeout_as_a_failure(
    keys: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker, gateways: Callable[..., ScriptedGateway],
) -> None:
    template = tmp_path / "template.toml"
    template.write_text(TEMPLATE)
    gateways("gw1", prefix="gateways/gw1/", script=("received", "installing"))
    gateways("gw2", prefix="gateways/gw2/")
    third = gateways("gw3", prefix="gateways/gw3/")
    result = sghost("deploy", "rollout", "--key", keys / "fleet.key", "--prefix-template", "gateways/{host}/",
                    "--broker", broker_address(fresh_mosquitto), "--timeout", "1.5", "--hosts", "gw1,gw2,gw3",
                    "--batch", "2", "--max-failed", "0", template)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = table(result.stdout)
    assert rows["gw1"][0] == "timeout"
    assert rows["gw1"][3] == "no final state within 1.5 s (last state: installing)"
    assert rows["gw2"][0] == "successful"
    assert rows["gw3"][0] == "not started"
    assert third.documents == []


def test_rollout_refuses_bad_input_before_pushing(keys: Path, tmp_path: Path) -> None:
    template = tmp_path / "template.toml"
    template.write_text('[host]\nname = "gw1"\n')
    broker = f"127.0.0.1:{free_port()}"
    base = ("deploy", "rollout", "--key", keys / "fleet.key", "--broker", broker)
    cases = {
        ("--hosts", "gw1,gw2", template): f"{template} (gw2): [host] name is 'gw1' but the document is for host 'gw2'",
        ("--hosts", "gw1,gw1", template): "--hosts 'gw1,gw1': 'gw1' is listed twice",
        ("--hosts", "gw1", "--prefix-template", "gateways/+/", template):
            "--prefix-template 'gateways/+/': expected topic levels",
        ("--hosts", "gw1", "--batch", "0", template): "--batch 0: expected at least 1",
    }
    for args, message in cases.items():
        result = sghost(*base, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert f"sghost deploy rollout: {message}" in result.stderr, (args, result.stderr)


def test_rollout_without_a_broker_starts_nothing_and_exits_4(keys: Path, tmp_path: Path) -> None:
    template = tmp_path / "template.toml"
    template.write_text(TEMPLATE)
    port = free_port()
    result = sghost("deploy", "rollout", "--key", keys / "fleet.key", "--broker", f"127.0.0.1:{port}",
                    "--hosts", "gw1,gw2", "--timeout", "5", template)
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"cannot connect to the broker 127.0.0.1:{port}" in result.stderr
    rows = table(result.stdout)
    assert rows["gw1"] == ["not started", "-", "-", "no connection to the broker"]
    assert rows["gw2"][0] == "not started"


def test_rollout_reports_hosts_whose_outcome_a_lost_connection_left_unknown(
    keys: Path, tmp_path: Path, fresh_mosquitto: MosquittoBroker, gateways: Callable[..., ScriptedGateway],
) -> None:
    template = tmp_path / "template.toml"
    template.write_text(TEMPLATE)
    gateways("gw1", prefix="gateways/gw1/", script=("received",), on_document=lambda received: fresh_mosquitto.stop())
    result = rollout(keys, template, fresh_mosquitto, "--hosts", "gw1,gw2", "--batch", "1", "--max-failed", "5")
    assert result.returncode == 4, result.stdout + result.stderr
    rows = table(result.stdout)
    assert rows["gw1"][0] == "unknown"
    assert rows["gw1"][3].startswith("outcome unknown: lost the connection to the broker")
    assert rows["gw2"] == ["not started", "-", "-", "no connection to the broker"]
    assert "sghost deploy rollout: lost the connection to the broker" in result.stderr
