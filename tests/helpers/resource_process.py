"""A resource process for the tests: ``python resource_process.py HOST PORT NAME``.

Registers the command ``cmd`` (echoed) and the data ``level`` (default ``7``),
starts with threaded networking, prints ``READY`` and then waits until it is
killed or its standard input closes, when it stops cleanly.
"""

from __future__ import annotations

import sys

from sgframework import Resource


def main() -> int:
    host, port, name = sys.argv[1:4]
    resource = Resource(name, host, port)
    resource.register_incoming_command("cmd", lambda *args: None)
    resource.register_outgoing_data("level", defaultvalue=7)
    resource.start(use_threaded_networking=True)
    print("READY" if resource.is_connected else f"NOT CONNECTED: {resource.last_connection_error}", flush=True)
    sys.stdin.read()  # returns when the test closes our stdin
    resource.stop()
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
