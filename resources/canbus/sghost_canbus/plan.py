"""The mapping resolved against the bus description: which frame each mapped signal is in.

Used by ``check_settings`` (every problem at once, for ``sghost check``) and by ``setup``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from sghost_canbus.codec import FrameCodec
from sghost_canbus.database import KcdFacts, node_name
from sghost_canbus.settings import AggregateMap, CanSettings, SignalMap


@dataclass
class Plan:
    """The frames the mapping uses, and what goes which way."""

    frames: dict[int, FrameCodec] = field(default_factory=dict)
    inbound: dict[int, list[tuple[SignalMap, str]]] = field(default_factory=dict)
    """Frame id -> the fromCan signals in it (with the CAN signal name)."""
    inbound_aggregates: dict[int, list[AggregateMap]] = field(default_factory=dict)
    commands: dict[str, tuple[FrameCodec, SignalMap | AggregateMap]] = field(default_factory=dict)
    """MQTT name -> the frame a toCan signal or aggregate is sent in."""


def _frames_by_signal(frames: dict[int, FrameCodec]) -> dict[str, list[FrameCodec]]:
    found: dict[str, list[FrameCodec]] = {}
    for frame in frames.values():
        for name in frame.signals:
            found.setdefault(name, []).append(frame)
    return found


def _unknown(where: str, name: str, known: dict[str, list[FrameCodec]], database_name: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f'{where}.canName: no signal "{name}" in {database_name}{hint}'


def _check_sendable(
    problems: list[str], where: str, frame: FrameCodec, ego: str | None, signal_names: list[str]
) -> None:
    if not frame.fast:
        why = "multiplexed" if frame.multiplexed else "with a floating-point signal"
        problems.append(f"{where}: toCan into frame {frame.label()}, which is {why}; sending it is not supported")
    if ego is not None and ego not in frame.senders:
        senders = ", ".join(frame.senders) or "no node"
        problems.append(
            f"{where}: toCan, but frame {frame.label()} ({', '.join(signal_names)}) is sent by {senders}, "
            f'not by node "{ego}"; expected only frames of the ego node'
        )


def build_plan(settings: CanSettings, database: Any, facts: KcdFacts) -> tuple[Plan, list[str]]:
    """Resolve every mapped signal and aggregate; return the plan and every problem."""
    problems: list[str] = []
    plan = Plan()
    frames = {message.frame_id: FrameCodec(message) for message in database.messages}
    by_signal = _frames_by_signal(frames)
    shown = settings.database.name if settings.database else "the database"
    ego = None
    if settings.node is not None:
        ego = node_name(database, facts, settings.node)
        if ego is None:
            nodes = ", ".join(sorted(node.name for node in database.nodes)) or "none"
            problems.append(f"node: no node {settings.node!r} in {shown}; its nodes: {nodes}")
    for signal in settings.signals:
        holders = by_signal.get(signal.can_name)
        if not holders:
            problems.append(_unknown(signal.where, signal.can_name, by_signal, shown))
            continue
        if signal.from_can:
            for frame in holders:
                plan.frames[frame.frame_id] = frame
                plan.inbound.setdefault(frame.frame_id, []).append((signal, signal.can_name))
        if signal.to_can:
            if len(holders) > 1:
                labels = ", ".join(frame.label() for frame in holders)
                problems.append(f"{signal.where}: toCan, but \"{signal.can_name}\" is in several frames: {labels}")
                continue
            _check_sendable(problems, signal.where, holders[0], ego, [signal.can_name])
            plan.frames[holders[0].frame_id] = holders[0]
            plan.commands[signal.mqtt_name] = (holders[0], signal)
    for aggregate in settings.aggregates:
        _plan_aggregate(problems, plan, aggregate, by_signal, shown, ego)
    return plan, problems


def _plan_aggregate(
    problems: list[str],
    plan: Plan,
    aggregate: AggregateMap,
    by_signal: dict[str, list[FrameCodec]],
    shown: str,
    ego: str | None,
) -> None:
    candidates: set[int] | None = None
    for index, member in enumerate(aggregate.signals):
        holders = by_signal.get(member.can_name)
        if not holders:
            problems.append(_unknown(f"{aggregate.where}.signals[{index}]", member.can_name, by_signal, shown))
            return
        ids = {frame.frame_id for frame in holders}
        candidates = ids if candidates is None else candidates & ids
    if not candidates:
        names = ", ".join(member.can_name for member in aggregate.signals)
        problems.append(f"{aggregate.where}: its signals ({names}) are not all in one frame; expected one frame")
        return
    if len(candidates) > 1:
        problems.append(f"{aggregate.where}: its signals are in several frames alike: " + ", ".join(
            f"0x{frame_id:x}" for frame_id in sorted(candidates)))
        return
    frame_id = candidates.pop()
    frame = next(f for f in by_signal[aggregate.signals[0].can_name] if f.frame_id == frame_id)
    plan.frames[frame_id] = frame
    if aggregate.from_can:
        plan.inbound_aggregates.setdefault(frame_id, []).append(aggregate)
    if aggregate.to_can:
        _check_sendable(problems, aggregate.where, frame, ego, [member.can_name for member in aggregate.signals])
        plan.commands[aggregate.mqtt_name] = (frame, aggregate)
