"""Helpers of the canbus tests: the climate bus description and mapping, frames, a pty pair.

A real sghost host comes from sghost.testing (``host_factory``, ``manifest_text``)."""

from __future__ import annotations

import subprocess
import time
from typing import Any

# The original's reference frame 0x008 (big endian, KCD offsets as the original read them),
# plus frames for commands (0x009: sent by node "climate"), aggregates and checks.
CLIMATE_KCD = """<?xml version="1.0" encoding="UTF-8"?>
<NetworkDefinition xmlns="http://kayak.2codeornot2code.org/1.0">
  <Document name="climateservice"/>
  <Node id="1" name="climate"/>
  <Node id="2" name="vehicle"/>
  <Bus name="climatebus">
    <Message id="0x008" name="vehicledata" length="8">
      <Producer><NodeRef id="2"/></Producer>
      <Signal name="vehiclespeed" offset="8" length="16" endianess="big"><Value slope="0.01"/></Signal>
      <Signal name="enginespeed" offset="26" length="14" endianess="big"/>
    </Message>
    <Message id="0x009" name="climatecontrol" length="8">
      <Producer><NodeRef id="1"/></Producer>
      <Signal name="acstatus" offset="0" length="1"/>
      <Signal name="indoortemperature" offset="8" length="8">
        <Value type="signed" slope="0.5" min="-20" max="50"/>
      </Signal>
      <Signal name="fanlevel" offset="16" length="4"/>
    </Message>
    <Message id="0x010" name="ADAS_Seg" length="8">
      <Producer><NodeRef id="1"/></Producer>
      <Signal name="ADAS_Seg_MsgType" offset="0" length="3"/>
      <Signal name="ADAS_Seg_Offset" offset="8" length="13"><Value slope="0.5"/></Signal>
    </Message>
    <Message id="0x011" name="climatestatus">
      <Producer><NodeRef id="2"/></Producer>
      <Signal name="outdoortemperature" offset="0" length="8" endianess="big"><Value type="signed"/></Signal>
      <Signal name="humidity" offset="20" length="12" endianess="big"/>
    </Message>
  </Bus>
</NetworkDefinition>
"""

MAPPING = {
    "entities": {
        "signals": [
            {"canName": "vehiclespeed"},
            {"canName": "enginespeed", "mqttType": "float"},
            {"canName": "indoortemperature", "canMultiplier": 1.0, "mqttName": "actualindoortemperature",
             "mqttType": "float", "mqttEcho": False, "toCan": False, "fromCan": True},
            {"canName": "acstatus", "mqttName": "aircondition", "mqttEcho": True, "toCan": True, "fromCan": False},
            {"canName": "fanlevel", "mqttType": "int", "canMultiplier": 10.0, "toCan": True, "fromCan": True},
        ],
        "aggregates": [
            {"mqttName": "ADAS_Seg", "toCan": True, "fromCan": False,
             "signals": [{"canName": "ADAS_Seg_MsgType", "mqttType": "int"}, {"canName": "ADAS_Seg_Offset"}]},
            {"mqttName": "climate",
             "signals": [{"canName": "outdoortemperature", "mqttName": "outdoor", "mqttType": "int"},
                         {"canName": "humidity"}]},
        ],
    }
}

def frame_bytes(text: str) -> tuple[int, bytes]:
    """``"008#00FF00FF00000000"`` -> (0x008, bytes)."""
    frame_id, data = text.split("#")
    return int(frame_id, 16), bytes.fromhex(data)


def send_frame(bus: Any, text: str) -> None:
    import can

    frame_id, data = frame_bytes(text)
    bus.send(can.Message(arbitration_id=frame_id, data=data, is_extended_id=len(text.split("#")[0]) > 3))


def receive_frame(bus: Any, frame_id: int, timeout: float = 5.0) -> Any:
    """The next frame with ``frame_id`` on ``bus`` (others skipped); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        message = bus.recv(remaining)
        if message is not None and message.arbitration_id == frame_id:
            return message
    raise AssertionError(f"no frame 0x{frame_id:x} on the bus within {timeout} s")


class PtyPair:
    """Two linked pseudo-terminals, ``ends[0]`` and ``ends[1]``, kept by a ``socat`` process."""

    def __init__(self, ends: tuple[str, str], process: subprocess.Popen[bytes]) -> None:
        self.ends = ends
        self.process = process

    def cut(self) -> None:
        """End socat: both ends hang up, as when a USB adapter is pulled."""
        self.process.terminate()
        self.process.wait(5)
