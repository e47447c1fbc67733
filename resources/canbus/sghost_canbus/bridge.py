"""The running resource: frames in, MQTT data out; MQTT commands in, frames out.

One reader thread owns the inbound side (bus or replay, decoding, throttling); the
main loop's MQTT callbacks own the outbound side (commands). They share only
``last_data`` (frame id -> its latest bytes), read and written one dict item at a time.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from sghost_canbus.codec import FrameCodec, RangeError, SignalCodec
from sghost_canbus.plan import Plan
from sghost_canbus.ratelimit import RateLimitedLog
from sghost_canbus.replay import LoggedFrame
from sghost_canbus.settings import AggregateMap, SignalMap

Send = Callable[[str, str], Any]
IDLE_WAIT = 0.25
REPLAY_BATCH = 0.002
AGGREGATE_FORM = '{"values": {"<mqttName>": <number>, ...}}'


class Output:
    """One data topic, throttled by ``min_interval`` and ``on_change_only``.

    A value arriving inside the interval is kept and sent when the interval ends
    (:class:`Flusher`), so the final value is never lost; dropping one costs a
    clock read and an attribute store.
    """

    __slots__ = ("flusher", "last_sent", "min_interval", "name", "next_allowed", "on_change_only", "pending", "send")

    def __init__(self, name: str, send: Send, min_interval: float, on_change_only: bool, flusher: Flusher) -> None:
        self.name = name
        self.send = send
        self.min_interval = min_interval
        self.on_change_only = on_change_only
        self.flusher = flusher
        self.last_sent: str | None = None
        self.next_allowed = 0.0
        self.pending: str | None = None

    def offer(self, payload: str) -> None:
        if self.on_change_only and payload == self.last_sent:
            self.pending = None  # the newest value is the one already sent
            return
        if self.min_interval <= 0.0:
            self.last_sent = payload
            self.send(self.name, payload)
            return
        now = time.monotonic()
        if now >= self.next_allowed:
            self.pending = None
            self.last_sent = payload
            self.next_allowed = now + self.min_interval
            self.send(self.name, payload)
            return
        if self.pending is None:
            self.flusher.add(self)
        self.pending = payload

    def flush(self, now: float) -> None:
        payload = self.pending
        if payload is None:
            return
        self.pending = None
        self.last_sent = payload
        self.next_allowed = now + self.min_interval
        self.send(self.name, payload)


class Flusher:
    """The throttled outputs holding a value to send when their interval ends."""

    def __init__(self) -> None:
        self.waiting: list[Output] = []
        self.next_due = math.inf

    def add(self, output: Output) -> None:
        self.waiting.append(output)
        self.next_due = min(self.next_due, output.next_allowed)

    def flush_due(self, now: float) -> None:
        still: list[Output] = []
        for output in self.waiting:
            if output.pending is None:
                continue
            if output.next_allowed <= now:
                output.flush(now)
            else:
                still.append(output)
        self.waiting = still
        self.next_due = min((output.next_allowed for output in still), default=math.inf)

    def wait_time(self, longest: float) -> float:
        return max(0.0, min(longest, self.next_due - time.monotonic()))


def _format(value: float, mqtt_type: str) -> str:
    return str(round(value)) if mqtt_type == "int" else str(float(value))


def _json_value(value: float, mqtt_type: str) -> float | int:
    return round(value) if mqtt_type == "int" else float(value)


class Bridge:
    """Decodes received frames into MQTT data and encodes MQTT commands into frames."""

    def __init__(
        self,
        name: str,
        plan: Plan,
        send: Send,
        logger: logging.Logger,
        bus: Any = None,
        connected: Callable[[], bool] | None = None,
        drop_while_disconnected: bool = False,
    ) -> None:
        self.name = name
        self.connected = connected or (lambda: True)
        """Whether the MQTT connection is up; at QoS 0 values are not published while it is down."""
        self.drop_while_disconnected = drop_while_disconnected
        self.plan = plan
        self.bus = bus
        self.send = send
        self.logger = logger
        self.bad = RateLimitedLog(logger)
        self.flusher = Flusher()
        self.last_data: dict[int, bytes] = {}
        self.outputs: dict[str, Output] = {}
        self.handlers: dict[int, Callable[[bytes], None]] = {
            frame_id: self._compile_frame(frame) for frame_id, frame in plan.frames.items()
            if frame_id in plan.inbound or frame_id in plan.inbound_aggregates
        }

    # ------------------------------------------------------------------ inbound

    def _output(self, name: str, min_interval: float, on_change_only: bool) -> Output:
        if name not in self.outputs:
            self.outputs[name] = Output(name, self.send, min_interval, on_change_only, self.flusher)
        return self.outputs[name]

    def _entity_output(self, entity: SignalMap | AggregateMap) -> Output:
        return self._output(entity.mqtt_name, entity.min_interval, entity.on_change_only)

    def _compile_frame(self, frame: FrameCodec) -> Callable[[bytes], None]:
        """One closure per frame: the hot path, with every lookup done here, once."""
        signals = [
            (frame.signals[can_name], signal, self._entity_output(signal))
            for signal, can_name in self.plan.inbound.get(frame.frame_id, [])
        ]
        aggregates = [
            (aggregate, self._entity_output(aggregate))
            for aggregate in self.plan.inbound_aggregates.get(frame.frame_id, [])
        ]
        if not frame.fast:
            return self._slow_handler(frame, signals, aggregates)
        length = frame.length
        label = frame.label()
        steps = [
            (codec.big_endian, codec.shift, codec.mask, (1 << (codec.length - 1)) if codec.signed else 0,
             1 << codec.length, codec.scale, codec.offset, signal.multiplier, signal.mqtt_type == "int", output.offer)
            for codec, signal, output in signals
        ]
        members = [
            [(frame.signals[m.can_name], m.mqtt_name, m.mqtt_type, m.multiplier) for m in aggregate.signals]
            for aggregate, _ in aggregates
        ]
        aggregate_outputs = [output.offer for _, output in aggregates]
        need_big = any(codec.big_endian for codec, _, _ in signals) or bool(aggregates)
        need_little = any(not codec.big_endian for codec, _, _ in signals) or bool(aggregates)
        from_bytes = int.from_bytes
        warn = self.bad.warning

        def handle(data: bytes) -> None:
            if len(data) != length:
                if len(data) < length:
                    warn(label, "Ignored frame %s with %d bytes: the database says %d", label, len(data), length)
                    return
                data = data[:length]
            big = from_bytes(data, "big") if need_big else 0
            little = from_bytes(data, "little") if need_little else 0
            for big_endian, shift, mask, sign, span, scale, offset, multiplier, as_int, offer in steps:
                raw = ((big if big_endian else little) >> shift) & mask
                if raw & sign:
                    raw -= span
                value = (raw * scale + offset) * multiplier
                offer(str(round(value)) if as_int else str(value))
            for index, offer in enumerate(aggregate_outputs):
                values = {}
                for codec, name, mqtt_type, multiplier in members[index]:
                    raw = codec.raw_of(big if codec.big_endian else little)
                    values[name] = _json_value(codec.physical(raw) * multiplier, mqtt_type)
                offer(json.dumps({"values": values}))

        return handle

    def _slow_handler(
        self,
        frame: FrameCodec,
        signals: list[tuple[SignalCodec, SignalMap, Output]],
        aggregates: list[tuple[AggregateMap, Output]],
    ) -> Callable[[bytes], None]:
        def handle(data: bytes) -> None:
            try:
                values = frame.decode_slow(data)
            except Exception as error:
                self.bad.warning(frame.label(), "Ignored frame %s: %s", frame.label(), error)
                return
            for codec, signal, output in signals:
                if codec.name in values:
                    output.offer(_format(values[codec.name] * signal.multiplier, signal.mqtt_type))
            for aggregate, output in aggregates:
                if all(member.can_name in values for member in aggregate.signals):
                    output.offer(json.dumps({"values": {
                        m.mqtt_name: _json_value(values[m.can_name] * m.multiplier, m.mqtt_type)
                        for m in aggregate.signals
                    }}))

        return handle

    def receive(self, frame_id: int, data: bytes) -> None:
        """One frame from the bus (or the replay): remember it, publish its mapped signals."""
        self.last_data[frame_id] = data
        handler = self.handlers.get(frame_id)
        if handler is not None:
            if self.drop_while_disconnected and not self.connected():
                # QoS 0 cannot queue: one rate-limited line instead of one warning per message.
                self.bad.warning("offline", "Not connected to the broker: frame %s not published", f"0x{frame_id:x}")
                return
            handler(data)

    def read_bus(self, stopping: threading.Event) -> None:
        """The reader thread's loop on a python-can bus."""
        bus = self.bus
        receive = self.receive
        flusher = self.flusher
        while not stopping.is_set():
            try:
                message = bus.recv(flusher.wait_time(IDLE_WAIT))
            except Exception as error:
                if stopping.is_set():
                    return
                raise RuntimeError(f"reading the CAN bus failed: {error}") from error
            if message is not None and not message.is_error_frame and not message.is_remote_frame:
                receive(message.arbitration_id, message.data)
            if flusher.waiting and time.monotonic() >= flusher.next_due:
                flusher.flush_due(time.monotonic())
        self.flusher.flush_due(math.inf)

    def replay(self, frames: list[LoggedFrame], loop: bool, stopping: threading.Event) -> None:
        """Take the log's frames as received at their recorded pace; again and again with ``loop``."""
        receive = self.receive
        flusher = self.flusher
        monotonic = time.monotonic
        while not self.connected() and not stopping.wait(0.05):
            pass  # the log is the test bench's input: none of it goes to a broker not yet connected
        began = monotonic()
        taken = 0
        while not stopping.is_set():
            start = monotonic()
            first = frames[0].time
            for frame in frames:
                due = start + (frame.time - first)
                while True:
                    now = monotonic()
                    if flusher.waiting and now >= flusher.next_due:
                        flusher.flush_due(now)
                    if now >= due or stopping.is_set():
                        break
                    # Sleep at least REPLAY_BATCH: frames closer together go out in small bursts, a frame
                    # at most that late, instead of one thread wake-up (and one of the MQTT loop) each.
                    stopping.wait(min(max(due - now, REPLAY_BATCH), flusher.wait_time(IDLE_WAIT)))
                if stopping.is_set():
                    return
                receive(frame.frame_id, frame.data)
                taken += 1
            if not loop:
                break
        elapsed = monotonic() - began
        while flusher.waiting and not stopping.wait(flusher.wait_time(IDLE_WAIT)):
            flusher.flush_due(monotonic())
        self.logger.info("Replay finished: %d frames in %.3f s", taken, elapsed)

    # ----------------------------------------------------------------- outbound

    def command_callback(self, mqtt_name: str) -> Callable[..., None]:
        frame, entity = self.plan.commands[mqtt_name]

        def on_command(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
            self.command(frame, entity, payload)

        return on_command

    def command(self, frame: FrameCodec, entity: SignalMap | AggregateMap, payload: str) -> bool:
        """Encode and send one command; False (and a rate-limited log line) when refused."""
        topic = f"command/{self.name}/{entity.mqtt_name}"
        try:
            raws = self._raws(frame, entity, payload)
        except ValueError as error:
            self.bad.warning(entity.mqtt_name, "Refused %s %r: %s; nothing sent", topic, payload[:60], error)
            return False
        if self.bus is None:
            self.bad.warning(
                "no-bus", "Refused %s %r: replaying without an interface, no bus to send to", topic, payload[:60]
            )
            return False
        data = frame.replace(self.last_data.get(frame.frame_id) or frame.initial_data(), raws)
        import can  # already imported by setup; a dictionary lookup here

        try:
            self.bus.send(can.Message(arbitration_id=frame.frame_id, data=data, is_extended_id=frame.extended), 0.5)
        except Exception as error:
            self.bad.warning("send", "Could not send frame %s for %s: %s", frame.label(), topic, error)
            return False
        self.last_data[frame.frame_id] = data
        if isinstance(entity, SignalMap) and entity.echo:
            self.send(entity.mqtt_name, payload)
        return True

    def _raws(self, frame: FrameCodec, entity: SignalMap | AggregateMap, payload: str) -> dict[str, int]:
        if isinstance(entity, SignalMap):
            return {entity.can_name: _signal_raw(frame.signals[entity.can_name], entity, payload)}
        try:
            document = json.loads(payload)
        except json.JSONDecodeError as error:
            raise ValueError(f'not JSON ({error.msg}); expected {AGGREGATE_FORM}') from None
        values = document.get("values", document) if isinstance(document, dict) else None
        if not isinstance(values, dict) or not values:
            raise ValueError(f"expected {AGGREGATE_FORM}")
        members = {member.mqtt_name: member for member in entity.signals}
        unknown = sorted(set(values) - set(members))
        if unknown:
            raise ValueError(f"unknown signal(s) {', '.join(unknown)}; expected some of {', '.join(members)}")
        return {
            members[name].can_name: _signal_raw(frame.signals[members[name].can_name], members[name], value, name)
            for name, value in values.items()
        }


def _signal_raw(codec: SignalCodec, signal: SignalMap, payload: Any, name: str | None = None) -> int:
    """The raw value a command asks for; ``ValueError`` saying why when it cannot be sent."""
    prefix = f"{name}: " if name else ""
    if isinstance(payload, bool) or (isinstance(payload, str) and payload in ("True", "False")):
        if codec.length != 1:
            raise ValueError(f"{prefix}True/False only for one-bit signals; expected a number")
        value = 1.0 if payload in (True, "True") else 0.0
    else:
        try:
            value = float(payload)
        except (TypeError, ValueError):
            raise ValueError(f"{prefix}{payload!r} is not a number") from None
    try:
        return codec.to_raw(value / signal.multiplier)
    except RangeError:
        low, high = sorted((codec.minimum * signal.multiplier, codec.maximum * signal.multiplier))
        raise ValueError(f"{prefix}{value!r} is out of range; expected {low:g} to {high:g}") from None
