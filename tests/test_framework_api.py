"""sgframework against a real, private mosquitto: the behaviour of the specified API.

One broker serves the module; every test uses its own resource/app names.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.sgtest import Calls, StatusCalls, log_watch, short_name, wait

import sgframework
from sgframework import App, Resource, constants
from sghost.host.broker import MosquittoBroker
from sghost.testing import Recorder, retained

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture(scope="module")
def broker(mosquitto: MosquittoBroker) -> MosquittoBroker:
    """The module's private mosquitto (sghost.testing's fixture), under this module's name for it."""
    return mosquitto


@pytest.fixture
def recorder(broker: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]) -> Recorder:
    return mqtt_recorder(broker)


@pytest.fixture
def made() -> Iterator[Callable[..., Any]]:
    """Factory of Resource/App objects that are stopped at the end of the test."""
    objects: list[App] = []

    def make(kind: type[App], name: str, broker: MosquittoBroker, **attributes: Any) -> Any:
        obj = kind(name, broker.host, broker.port)
        for key, value in attributes.items():
            setattr(obj, key, value)
        objects.append(obj)
        return obj

    yield make
    for obj in objects:
        if obj.mqttclient is not None:
            obj.stop()


def pump_until(obj: App, condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Call obj.loop() (loop mode) until condition() holds."""
    return wait(condition, timeout, pump=obj.loop)


# ------------------------------------------------------------------ static API


def test_constants_version_and_certificate_names() -> None:
    assert (
        constants.PREFIX_COMMAND,
        constants.PREFIX_DATA,
        constants.PREFIX_COMMANDAVAILABLE,
        constants.PREFIX_DATAAVAILABLE,
        constants.PREFIX_RESOURCEAVAILABLE,
    ) == ("command", "data", "commandavailable", "dataavailable", "resourceavailable")
    assert constants.PRESENCE == "presence"
    assert (constants.PAYLOAD_TRUE, constants.PAYLOAD_FALSE) == ("True", "False")
    assert (constants.DEFAULT_QOS, constants.DEFAULT_TIMEOUT, constants.DEFAULT_KEEPALIVE_TIME) == (1, 1.0, 10)
    for cls in (App, Resource):
        assert cls.CA_CERTS == "ca_public_certificate.pem"
        assert cls.CERTFILE == "public_certificate.pem"
        assert cls.KEYFILE == "private_key.pem"
    assert isinstance(sgframework.__version__, str) and sgframework.__version__
    assert sgframework.framework.App is App


def test_attributes_and_defaults_of_the_spec() -> None:
    resource = Resource("attrs", "localhost")
    assert (resource.name, resource.host, resource.port, resource.certificate_directory) == (
        "attrs",
        "localhost",
        1883,
        None,
    )
    assert resource.protocol == mqtt.MQTTv31
    assert resource.qos == 1 and resource.timeout == 1.0 and resource.keepalive == 10
    assert resource.mqttclient is None and resource.userdata is None
    assert resource.on_broker_connectionstatus_info is None
    assert isinstance(resource.logger, logging.Logger)
    assert resource.username is None and resource.password is None
    assert not resource.is_connected and resource.last_connection_error is None


def test_repr_is_exact_and_port_may_be_a_string() -> None:
    resource = Resource("climateservice", "gateway.local", "1883")
    assert resource.port == 1883
    assert repr(resource) == (
        "SG Resource: 'climateservice', connecting to host 'gateway.local', port 1883. "
        "Has 0 incoming and 0 outgoing topics registered."
    )
    resource.register_incoming_command("aircondition", lambda *a: None)
    resource.register_outgoing_data("temperature")
    resource.register_outgoing_data("humidity")
    assert repr(resource) == (
        "SG Resource: 'climateservice', connecting to host 'gateway.local', port 1883. "
        "Has 1 incoming and 2 outgoing topics registered."
    )
    app = App("climateapp", "127.0.0.1", 1884)
    app.register_incoming_data("climateservice", "temperature", lambda *a: None)
    assert repr(app) == (
        "SG App: 'climateapp', connecting to host '127.0.0.1', port 1884. Has 1 input signals registered."
    )
    with pytest.raises(ValueError, match="port"):
        App("a", "localhost", "eighty")


def test_descriptive_ascii_art_lists_incoming_and_outgoing_topics() -> None:
    resource = Resource("taxisignservice", "localhost")
    resource.register_incoming_command("state", lambda *a: None)
    resource.register_outgoing_data("fare")
    resource.register_incoming_data("meterservice", "distance", lambda *a: None)
    art = resource.get_descriptive_ascii_art()
    assert art.count("\n") > 5
    assert repr(resource) in art
    incoming, outgoing = art.split("Outgoing")
    for topic in ("command/taxisignservice/state", "data/meterservice/distance"):
        assert topic in incoming
    for topic in (
        "data/taxisignservice/state",
        "data/taxisignservice/fare",
        "commandavailable/taxisignservice/state",
        "dataavailable/taxisignservice/fare",
        "resourceavailable/taxisignservice/presence",
    ):
        assert topic in outgoing


BAD_NAMES = ["", "a/b", "a+", "#", "a\0b"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_invalid_names_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        Resource(bad, "localhost")
    with pytest.raises(ValueError):
        App(bad, "localhost")
    resource = Resource("ok", "localhost")
    app = App("ok", "localhost")
    with pytest.raises(ValueError):
        resource.register_incoming_command(bad, lambda *a: None)
    with pytest.raises(ValueError):
        resource.register_outgoing_data(bad)
    for service, signal in ((bad, "s"), ("s", bad)):
        with pytest.raises(ValueError):
            app.register_incoming_data(service, signal, lambda *a: None)
        with pytest.raises(ValueError):
            app.register_incoming_availability(constants.PREFIX_DATAAVAILABLE, service, signal, lambda *a: None)
    assert "0 incoming and 0 outgoing" in repr(resource)
    assert "0 input signals" in repr(app)


def test_methods_before_start_raise_value_error() -> None:
    resource = Resource("early", "127.0.0.1", 1)
    resource.register_outgoing_data("x")
    for call in (
        resource.stop,
        resource.loop,
        lambda: resource.send_data("x", 1),
        lambda: resource.send_command("other", "cmd", 1),
    ):
        with pytest.raises(ValueError, match="start"):
            call()


# ------------------------------------------------------------- threaded mode


def test_threaded_start_announces_presence_availability_and_defaults(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    name = short_name("th")
    resource = made(Resource, name, broker)
    resource.register_incoming_command("lamp", Calls(), defaultvalue="off")
    resource.register_incoming_command("nodefault", Calls())
    resource.register_incoming_command("silent", Calls(), echo=False, defaultvalue="quiet")
    resource.register_outgoing_data("temperature", defaultvalue=21.5)
    resource.register_outgoing_data("humidity")
    status = StatusCalls()
    resource.on_broker_connectionstatus_info = status
    resource.start(use_threaded_networking=True)
    assert resource.is_connected  # start() returned after the connection was complete
    assert status.states == [True]

    recorder.wait_for(f"resourceavailable/{name}/presence", "True")
    recorder.wait_for(f"data/{name}/lamp", "off")
    recorder.wait_for(f"data/{name}/temperature", "21.5")
    assert retained(broker, f"+/{name}/+") == {
        f"resourceavailable/{name}/presence": "True",
        f"commandavailable/{name}/lamp": "True",
        f"commandavailable/{name}/nodefault": "True",
        f"commandavailable/{name}/silent": "True",
        # An echo is data: the original announces an echoed command on dataavailable/ too.
        f"dataavailable/{name}/lamp": "True",
        f"dataavailable/{name}/nodefault": "True",
        f"dataavailable/{name}/temperature": "True",
        f"dataavailable/{name}/humidity": "True",
    }
    # The barrier: a value sent now comes after any the start published, on the same connection.
    resource.send_data("temperature", 22.5)
    recorder.wait_for(f"data/{name}/temperature", "22.5")
    assert recorder.on(f"data/{name}/humidity") == [] and recorder.on(f"data/{name}/nodefault") == []
    # ... and, as the original, publishes a command's default only as the initial value of its echo.
    assert recorder.on(f"data/{name}/silent") == []
    assert resource.presence_topic == f"resourceavailable/{name}/presence"
    assert sorted(resource.announced_topics) == sorted(
        t for t in retained(broker, f"+/{name}/+") if not t.startswith("resourceavailable")
    )

    resource.stop()
    recorder.wait_for(f"resourceavailable/{name}/presence", "False")
    assert retained(broker, f"resourceavailable/{name}/presence") == {f"resourceavailable/{name}/presence": "False"}
    assert status.states == [True, False] and not resource.is_connected


def test_loop_in_threaded_mode_warns_and_returns(broker: MosquittoBroker, made: Callable[..., Any]) -> None:
    resource = made(Resource, short_name("lw"), broker)
    resource.start(use_threaded_networking=True)
    with log_watch() as logs:
        resource.loop()
    assert any("threaded" in r.getMessage() and r.levelno == logging.WARNING for r in logs.records)
    assert resource.is_connected


def test_start_twice_restarts_and_republishes_updated_defaults(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    name = short_name("tw")
    resource = made(Resource, name, broker)
    resource.register_outgoing_data("level", defaultvalue=1)
    resource.start(use_threaded_networking=True)
    recorder.wait_for(f"data/{name}/level", "1")
    resource.send_data("level", 42)
    first = recorder.wait_for(f"data/{name}/level", "42")
    resource.start(use_threaded_networking=True)  # allowed: stops the old client, connects anew
    assert resource.is_connected
    recorder.wait_for(f"resourceavailable/{name}/presence", "True", after=first.at)
    again = recorder.wait_for(f"data/{name}/level", "42", after=first.at + 1e-6)
    assert again.at > first.at
    presences = [m.payload for m in recorder.on(f"resourceavailable/{name}/presence")]
    assert presences == ["True", "False", "True"]


def test_client_id_is_name_and_pid_with_clean_session_else_name(
    broker: MosquittoBroker, made: Callable[..., Any]
) -> None:
    name = short_name("cid")
    resource = made(Resource, name, broker)
    resource.start(use_threaded_networking=True)
    resource.stop()
    resource.start(use_threaded_networking=True, use_clean_session=False)
    resource.stop()
    log = broker.log_text()
    assert f" as {name}-{os.getpid()} (p1, c1," in log
    assert f" as {name} (p1, c0," in log


# ------------------------------------------------------------------ echo rules


def test_echo_rules(broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]) -> None:
    name = short_name("ec")
    resource = made(Resource, name, broker)
    plain = Calls()
    returning = Calls(returns=17)
    silent = Calls()
    resource.register_incoming_command("plain", plain)
    resource.register_incoming_command("returning", returning)
    resource.register_incoming_command("kept", Calls(), send_echo_as_retained=True)
    resource.register_incoming_command("silent", silent, echo=False)
    app = made(App, short_name("eca"), broker)
    app.start(use_threaded_networking=True)
    resource.start(use_threaded_networking=True)

    for signal in ("silent", "plain", "returning", "kept"):
        app.send_command(name, signal, "on")
    recorder.wait_for(f"data/{name}/plain", "on")  # None returned: the payload is echoed
    recorder.wait_for(f"data/{name}/returning", "17")  # else str(return value)
    recorder.wait_for(f"data/{name}/kept", "on")
    assert silent.wait_for("on") and recorder.on(f"data/{name}/silent") == []
    assert [m.payload for m in recorder.on(f"data/{name}/returning")] == ["17"]
    # only send_echo_as_retained echoes are retained (a late subscriber sees them)
    assert retained(broker, f"data/{name}/+") == {f"data/{name}/kept": "on"}


def test_no_echo_when_the_callback_raised_and_the_traceback_is_logged(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    name = short_name("ex")
    resource = made(Resource, name, broker)
    calls = Calls(raises_on="bad")
    resource.register_incoming_command("cmd", calls, defaultvalue="init")
    resource.start(use_threaded_networking=True)
    recorder.wait_for(f"data/{name}/cmd", "init")

    recorder.publish(f"command/{name}/cmd", "bad")
    recorder.publish(f"command/{name}/cmd", "good")
    recorder.wait_for(f"data/{name}/cmd", "good")  # the client kept working
    assert calls.payloads() == ["bad", "good"]
    assert [m.payload for m in recorder.on(f"data/{name}/cmd")] == ["init", "good"]
    failures = [r for r in caplog.records if r.exc_info and r.name == f"sgframework.{name}"]
    assert failures, "the exception was not logged"
    assert "callback refuses 'bad'" in caplog.text and "Traceback" in caplog.text
    # a raising connection-status callback is survived too
    resource.on_broker_connectionstatus_info = lambda obj, connected: 1 / 0
    resource.start(use_threaded_networking=True)
    assert resource.is_connected and "ZeroDivisionError" in caplog.text


def test_defaults_are_updated_by_echoes_and_send_data(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    name = short_name("df")
    resource = made(Resource, name, broker)
    resource.register_incoming_command("state", Calls(), defaultvalue="off")
    resource.register_incoming_command("mode", Calls(returns="AUTO"), defaultvalue="manual")
    resource.register_outgoing_data("level", defaultvalue=0)
    resource.register_outgoing_data("nodefault")
    resource.start(use_threaded_networking=True)
    recorder.wait_for(f"data/{name}/state", "off")
    recorder.publish(f"command/{name}/state", "on")
    recorder.publish(f"command/{name}/mode", "auto")
    recorder.wait_for(f"data/{name}/state", "on")
    recorder.wait_for(f"data/{name}/mode", "AUTO")
    resource.send_data("level", 9)
    resource.send_data("nodefault", "x")
    marker = recorder.wait_for(f"data/{name}/level", "9")

    resource.stop()
    resource.start(use_threaded_networking=True)
    recorder.wait_for(f"data/{name}/state", "on", after=marker.at + 1e-6)
    recorder.wait_for(f"data/{name}/mode", "AUTO", after=marker.at + 1e-6)
    recorder.wait_for(f"data/{name}/level", "9", after=marker.at + 1e-6)
    # a signal without a default stays without one
    assert [m.payload for m in recorder.on(f"data/{name}/nodefault")] == ["x"]


def test_callback_on_change_only_and_stripped_strings(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    name = short_name("ch")
    resource = made(Resource, name, broker)
    changes, every = Calls(), Calls()
    resource.register_incoming_command("changes", changes, callback_on_change_only=True)
    resource.register_incoming_command("every", every)
    resource.start(use_threaded_networking=True)
    for payload in ("  on\n", "on", "off ", "off", "on"):
        recorder.publish(f"command/{name}/changes", payload)
        recorder.publish(f"command/{name}/every", payload)
    wait(lambda: len(every.calls) == 5)  # commands are handled in order: "changes" is done too
    assert every.payloads() == ["on", "on", "off", "off", "on"]
    assert changes.payloads() == ["on", "off", "on"]
    assert [m.payload for m in recorder.on(f"data/{name}/changes")] == ["on", "off", "on"]
    call = every.calls[0]
    assert (call.obj, call.messagetype, call.servicename, call.signalname) == (resource, "command", name, "every")


def test_send_data_of_an_unregistered_signal_warns_and_sends_non_retained(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    name = short_name("un")
    resource = made(Resource, name, broker)
    resource.register_outgoing_data("known", send_data_as_retained=True)
    resource.start(use_threaded_networking=True)
    resource.send_data("unknown", 3)
    resource.send_data("known", 4)
    recorder.wait_for(f"data/{name}/unknown", "3")
    recorder.wait_for(f"data/{name}/known", "4")
    assert any(
        r.levelno == logging.WARNING and f"data/{name}/unknown" in r.getMessage() for r in caplog.records
    )
    assert retained(broker, f"data/{name}/+") == {f"data/{name}/known": "4"}


# --------------------------------------------------------------- apps and QoS


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_command_echo_round_trip_at_each_qos(
    qos: int, broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    name = short_name("q")
    resource = made(Resource, name, broker, qos=qos)
    resource.register_incoming_command("cmd", Calls(returns="done"))
    resource.register_outgoing_data("value")
    app = made(App, short_name("qa"), broker, qos=qos)
    echoes, presence, available = Calls(), Calls(), Calls()
    app.register_incoming_data(name, "cmd", echoes)
    app.register_incoming_availability(constants.PREFIX_RESOURCEAVAILABLE, name, "ignored", presence)
    app.register_incoming_availability(constants.PREFIX_DATAAVAILABLE, name, "value", available)
    app.start(use_threaded_networking=True)
    resource.start(use_threaded_networking=True)
    presence.wait_for("True")
    assert available.wait_for("True").messagetype == "dataavailable"
    app.send_command(name, "cmd", 5)
    assert recorder.wait_for(f"command/{name}/cmd", "5").qos == qos
    call = echoes.wait_for("done")
    assert (call.obj, call.messagetype, call.servicename, call.signalname) == (app, "data", name, "cmd")
    resource.send_data("value", "x")
    assert recorder.wait_for(f"data/{name}/value", "x").qos == qos


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["MQTTv311", "MQTTv5"])
def test_other_protocol_versions_connect_and_work(
    protocol: int, broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    name = short_name("pv")
    resource = made(Resource, name, broker, protocol=protocol)
    resource.register_incoming_command("cmd", Calls())
    app = made(App, short_name("pva"), broker, protocol=protocol)
    echoes = Calls()
    app.register_incoming_data(name, "cmd", echoes)
    resource.start(use_threaded_networking=True)
    app.start(use_threaded_networking=True)
    assert resource.is_connected and app.is_connected
    recorder.wait_for(f"resourceavailable/{name}/presence", "True")
    app.send_command(name, "cmd", "hello")
    echoes.wait_for("hello")
    resource.stop()
    recorder.wait_for(f"resourceavailable/{name}/presence", "False")


def test_send_data_from_many_threads_all_arrive(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    name = short_name("mt")
    resource = made(Resource, name, broker)
    resource.register_outgoing_data("n")
    resource.start(use_threaded_networking=True)
    threads, per_thread = 8, 100
    barrier = threading.Barrier(threads)

    def send(index: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            resource.send_data("n", f"{index}-{i}")

    workers = [threading.Thread(target=send, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    topic = f"data/{name}/n"
    recorder.wait_until(lambda: len(recorder.on(topic)) >= threads * per_thread, timeout=10)
    got = [m.payload for m in recorder.on(topic)]
    assert sorted(got) == sorted(f"{k}-{i}" for k in range(threads) for i in range(per_thread))


# ----------------------------------------------------------------- loop mode


def test_loop_mode_first_loop_connects_and_stop_delivers_presence_false(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    name = short_name("lp")
    resource = made(Resource, name, broker)
    commands = Calls()
    resource.register_incoming_command("cmd", commands, defaultvalue="d")
    status = StatusCalls()
    resource.on_broker_connectionstatus_info = status
    resource.timeout = 0.05  # loop() blocks at most this long
    resource.start()  # loop mode: nothing happens until loop()
    assert not resource.is_connected
    first_loop = time.monotonic()
    resource.loop()
    pump_until(resource, lambda: resource.is_connected)
    pump_until(resource, lambda: status.states)  # True once the broker acknowledged the subscription
    assert status.states == [True]
    pump_until(resource, lambda: recorder.latest(f"resourceavailable/{name}/presence") == "True")
    assert min(m.at for m in recorder.on(f"resourceavailable/{name}/presence")) >= first_loop, "presence before loop()"
    pump_until(resource, lambda: recorder.latest(f"data/{name}/cmd") == "d")

    app = made(App, short_name("lpa"), broker)
    echoes = Calls()
    app.register_incoming_data(name, "cmd", echoes)
    app.start()
    pump_until(app, lambda: app.is_connected)
    app.send_command(name, "cmd", " go ")
    pump_until(resource, lambda: commands.payloads() == ["go"])
    echoes.wait_for("go", pump=app.loop)
    assert commands.calls[0].thread == threading.current_thread().name  # callbacks run inside loop()

    resource.stop()  # no loop() call after this: stop() itself delivers the presence False
    recorder.wait_for(f"resourceavailable/{name}/presence", "False")
    assert status.states == [True, False]


# --------------------------------------------------------- robustness, sessions


def test_non_utf8_payload_is_dropped_and_the_client_keeps_receiving(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    app = made(App, short_name("u8"), broker)
    calls = Calls()
    app.register_incoming_data("sensor", "t8", calls)
    with log_watch() as logs:
        app.start(use_threaded_networking=True)
        recorder.publish("data/sensor/t8", b"\xff\xfe\xfd")
        recorder.publish("data/sensor/t8", "after")
        calls.wait_for("after")
        logs.wait_for("not valid UTF-8")
    assert calls.payloads() == ["after"]


def test_wrong_depth_topics_are_ignored_and_the_client_keeps_receiving(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    # The framework only subscribes to three-level topics, so a wrong-depth topic can
    # only reach it through a subscription made behind its back, as user code may do.
    app = made(App, short_name("wd"), broker)
    calls = Calls()
    app.register_incoming_data("sensor", "wd", calls)
    with log_watch() as logs:
        app.start(use_threaded_networking=True)
        # QoS 1: the broker may drop QoS 0 deliveries, and this test is about what arrives.
        app.mqttclient.subscribe("data/#", qos=1)
        app.mqttclient.publish("data/probe/x/y", "probe", qos=1)  # comes back once the subscription is active
        logs.wait_for("Ignored a message on 'data/probe/x/y'")  # not paho's "Sending PUBLISH" line
        recorder.publish("data/sensor/wd/extra", "deep")
        recorder.publish("data/sensor", "shallow")
        logs.wait_for("Ignored a message on 'data/sensor/wd/extra'")
        logs.wait_for("Ignored a message on 'data/sensor'")
        recorder.publish("data/sensor/wd", "fine")
        calls.wait_for("fine")
    ignored = [t for t in logs.texts() if "three levels" in t]
    assert len(ignored) >= 2
    assert "deep" not in calls.payloads() and "shallow" not in calls.payloads()


def test_persistent_session_receives_a_command_sent_while_stopped(
    broker: MosquittoBroker, made: Callable[..., Any]
) -> None:
    name = short_name("ps")
    resource = made(Resource, name, broker)
    commands = Calls()
    resource.register_incoming_command("cmd", commands)
    resource.start(use_threaded_networking=True, use_clean_session=False)
    resource.stop()
    app = made(App, short_name("psa"), broker)
    app.start(use_threaded_networking=True)
    app.send_command(name, "cmd", "while-away")
    app.stop()  # the DISCONNECT follows the PUBLISH on the same connection
    resource.start(use_threaded_networking=True, use_clean_session=False)
    commands.wait_for("while-away")

    # a clean session, by contrast, starts afresh
    clean = made(Resource, short_name("pc"), broker)
    missed = Calls()
    clean.register_incoming_command("cmd", missed)
    clean.start(use_threaded_networking=True)
    clean.stop()
    app.start(use_threaded_networking=True)
    app.send_command(clean.name, "cmd", "lost")
    app.send_command(clean.name, "cmd", "lost2")
    clean.start(use_threaded_networking=True)
    app.send_command(clean.name, "cmd", "fresh")
    missed.wait_for("fresh")
    assert missed.payloads() == ["fresh"]


def test_last_will_says_false_when_a_resource_process_is_killed(
    broker: MosquittoBroker, recorder: Recorder
) -> None:
    name = short_name("kill")
    process = subprocess.Popen(
        [sys.executable, str(HELPERS / "resource_process.py"), broker.host, str(broker.port), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY"
        recorder.wait_for(f"resourceavailable/{name}/presence", "True")
        recorder.wait_for(f"data/{name}/level", "7")
        process.kill()  # SIGKILL: no chance to say goodbye
        process.wait(5)
        recorder.wait_for(f"resourceavailable/{name}/presence", "False")
        assert retained(broker, f"resourceavailable/{name}/+") == {f"resourceavailable/{name}/presence": "False"}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_republish_sends_again_the_last_retained_value_of_a_signal_without_default(
    broker: MosquittoBroker, recorder: Recorder, made: Callable[..., Any]
) -> None:
    name = short_name("rp")
    resource = made(Resource, name, broker)
    resource.register_outgoing_data("level", send_data_as_retained=True)
    resource.register_outgoing_data("pulse")  # not retained, no default: nothing to publish again
    resource.register_incoming_command("mode", Calls(), send_echo_as_retained=True)
    resource.start(use_threaded_networking=True)
    resource.send_data("level", 7)
    resource.send_data("pulse", 1)
    recorder.publish(f"command/{name}/mode", "eco")
    recorder.wait_for(f"data/{name}/level", "7")
    recorder.wait_for(f"data/{name}/mode", "eco")
    recorder.wait_for(f"data/{name}/pulse", "1")
    assert resource.republish() > 0
    recorder.wait_until(lambda: len(recorder.on(f"data/{name}/level")) == 2)
    recorder.wait_until(lambda: len(recorder.on(f"data/{name}/mode")) == 2)
    assert [m.payload for m in recorder.on(f"data/{name}/mode")] == ["eco", "eco"]
    resource.send_data("level", 8)  # the barrier: after everything republish() sent
    recorder.wait_for(f"data/{name}/level", "8")
    assert len(recorder.on(f"data/{name}/pulse")) == 1
