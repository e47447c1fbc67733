"""sgframework against mosquitto listeners that require TLS client certificates or passwords.

The CA, the broker's and the client's certificates are generated at test time.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from helpers.certs import TlsFiles, make_tls_files
from helpers.sgtest import Calls, log_watch, wait

from sgframework import App, Resource, constants
from sghost.host.broker import MosquittoBroker
from sghost.testing import Recorder


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_broker(tls_files: TlsFiles) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(extra_config=tls_files.broker_config())
    broker.start()
    yield broker
    broker.cleanup()


@pytest.fixture
def tls_recorder(tls_broker: MosquittoBroker, tls_files: TlsFiles) -> Iterator[Recorder]:
    recorder = Recorder(tls_broker.host, tls_broker.port, "#", certificate_directory=tls_files.client_dir).start()
    yield recorder
    recorder.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_resource_with_certificates_connects(
    host: str, tls_broker: MosquittoBroker, tls_files: TlsFiles, tls_recorder: Recorder
) -> None:
    name = "tls" + host[:3]
    resource = Resource(name, host, tls_broker.port, certificate_directory=str(tls_files.client_dir))
    commands = Calls()
    resource.register_incoming_command("cmd", commands)
    resource.start(use_threaded_networking=True)
    try:
        assert resource.is_connected, resource.last_connection_error
        tls_recorder.wait_for(f"resourceavailable/{name}/presence", "True")
        tls_recorder.publish(f"command/{name}/cmd", "secret")
        tls_recorder.wait_for(f"data/{name}/cmd", "secret")
    finally:
        resource.stop()
    tls_recorder.wait_for(f"resourceavailable/{name}/presence", "False")


def test_tls_in_loop_mode(tls_broker: MosquittoBroker, tls_files: TlsFiles, tls_recorder: Recorder) -> None:
    resource = Resource("tlsloop", tls_broker.host, tls_broker.port, certificate_directory=str(tls_files.client_dir))
    resource.start()
    try:
        wait(lambda: resource.is_connected, pump=resource.loop)
        tls_recorder.wait_for("resourceavailable/tlsloop/presence", "True")
    finally:
        resource.stop()
    tls_recorder.wait_for("resourceavailable/tlsloop/presence", "False")


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "loop"])
def test_tls_listener_without_certificates_refuses_and_the_error_says_why(
    threaded: bool, tls_broker: MosquittoBroker, tls_recorder: Recorder
) -> None:
    app = App("notls", tls_broker.host, tls_broker.port)
    with log_watch() as logs:
        app.start(use_threaded_networking=threaded)
        try:
            pump = None if threaded else app.loop
            text = logs.wait_for("closed the connection before accepting it", pump=pump)
        finally:
            app.stop()
    assert "certificate_directory" in text
    assert not app.is_connected
    assert app.last_connection_error == text


def test_missing_certificate_file_raises_an_error_naming_the_path(
    tls_broker: MosquittoBroker, tls_files: TlsFiles, tmp_path: Path
) -> None:
    partial = tmp_path / "certs"
    shutil.copytree(tls_files.client_dir, partial)
    (partial / constants.KEYFILE).unlink()
    resource = Resource("nokey", tls_broker.host, tls_broker.port, certificate_directory=str(partial))
    with pytest.raises(FileNotFoundError) as raised:
        resource.start(use_threaded_networking=True)
    assert str(partial / constants.KEYFILE) in str(raised.value)
    assert resource.mqttclient is None


def test_legacy_tls_version_is_upgraded_with_a_warning(
    tls_broker: MosquittoBroker, tls_files: TlsFiles, tls_recorder: Recorder
) -> None:
    resource = Resource("tlsv1", tls_broker.host, tls_broker.port, certificate_directory=str(tls_files.client_dir))
    resource.tls_version = ssl.PROTOCOL_TLSv1  # the spec's default; refused by current brokers
    with log_watch() as logs:
        resource.start(use_threaded_networking=True)
    try:
        assert resource.is_connected, resource.last_connection_error
        assert any("obsolete" in text and "TLS 1.2" in text for text in logs.texts())
        tls_recorder.wait_for("resourceavailable/tlsv1/presence", "True")
    finally:
        resource.stop()


def test_a_server_certificate_from_another_ca_is_refused(
    tls_broker: MosquittoBroker, tmp_path: Path
) -> None:
    other = make_tls_files(tmp_path)  # a client certificate and CA the broker does not know
    app = App("otherca", tls_broker.host, tls_broker.port, certificate_directory=str(other.client_dir))
    app.start(use_threaded_networking=True)
    try:
        assert not app.is_connected
        assert app.last_connection_error and str(tls_broker.port) in app.last_connection_error
    finally:
        app.stop()


# ---------------------------------------------------------------- passwords


@pytest.fixture(scope="module")
def password_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed (Debian: apt-get install mosquitto), no password file")
    password_file = tmp_path_factory.mktemp("pw") / "passwords"
    subprocess.run([tool, "-b", "-c", str(password_file), "sguser", "right-pw"], check=True)
    broker = MosquittoBroker(extra_config=[f"password_file {password_file}"], allow_anonymous=False)
    broker.start()
    yield broker
    broker.cleanup()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv31, mqtt.MQTTv311, mqtt.MQTTv5], ids=["v31", "v311", "v5"])
def test_right_password_connects(protocol: int, password_broker: MosquittoBroker) -> None:
    resource = Resource("pwok", password_broker.host, password_broker.port)
    resource.username, resource.password, resource.protocol = "sguser", "right-pw", protocol
    resource.start(use_threaded_networking=True)
    try:
        assert resource.is_connected and resource.last_connection_error is None
    finally:
        resource.stop()


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "loop"])
def test_wrong_password_is_refused_with_a_clear_error(threaded: bool, password_broker: MosquittoBroker) -> None:
    app = App("pwbad", password_broker.host, password_broker.port)
    app.username, app.password = "sguser", "wrong-pw"
    with log_watch() as logs:
        app.start(use_threaded_networking=threaded)
        try:
            text = logs.wait_for("refused the connection", pump=None if threaded else app.loop)
        finally:
            app.stop()
    assert "check username and password" in text
    assert app.last_connection_error == text and not app.is_connected


@pytest.fixture(scope="module")
def misnamed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MosquittoBroker, TlsFiles]]:
    """A TLS broker on 127.0.0.1 whose certificate names only 'broker.example'."""
    files = make_tls_files(tmp_path_factory.mktemp("misnamed"), server_names=("broker.example",))
    broker = MosquittoBroker(extra_config=files.broker_config())
    broker.start()
    yield broker, files
    broker.cleanup()


def assert_broker_certificate_refused(resource: Resource) -> None:
    """Start ``resource`` and check that it refuses the broker's certificate, saying so."""
    resource.start(use_threaded_networking=True)
    try:
        error = wait(lambda: resource.last_connection_error)
        assert error is not None and "certificate verify failed" in error, error
        assert not resource.is_connected
    finally:
        resource.stop()


def test_a_broker_certificate_for_another_name_is_refused(misnamed_broker: tuple[MosquittoBroker, TlsFiles]) -> None:
    broker, files = misnamed_broker
    resource = Resource("misnamed", broker.host, broker.port, certificate_directory=str(files.client_dir))
    assert_broker_certificate_refused(resource)


def test_tls_insecure_accepts_a_misnamed_but_trusted_broker(misnamed_broker: tuple[MosquittoBroker, TlsFiles]) -> None:
    broker, files = misnamed_broker
    resource = Resource("insecure", broker.host, broker.port, certificate_directory=str(files.client_dir))
    resource.tls_insecure = True
    resource.start(use_threaded_networking=True)
    try:
        assert wait(lambda: resource.is_connected), resource.last_connection_error
    finally:
        resource.stop()


def test_tls_insecure_still_refuses_a_broker_from_another_ca(
    misnamed_broker: tuple[MosquittoBroker, TlsFiles], tmp_path: Path
) -> None:
    broker, _files = misnamed_broker
    stranger = make_tls_files(tmp_path / "stranger")
    resource = Resource("stranger", broker.host, broker.port, certificate_directory=str(stranger.client_dir))
    resource.tls_insecure = True
    assert_broker_certificate_refused(resource)
