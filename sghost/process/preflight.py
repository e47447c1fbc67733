"""What a resource process does before its plugin runs: become its user, check its certificate.

:func:`prepare` is called by ``child.run_child`` right after the fork. It returns None
when the process may go on, or the exit code after it told the supervisor why not
(a ``connect_error`` event, so the reason becomes ``<res>_error``).
"""

from __future__ import annotations

import logging

from sghost.config.certificates import inspect_directory
from sghost.process import events
from sghost.process.exitcodes import EXIT_BROKER_REFUSED
from sghost.process.privileges import PrivilegeError, drop_privileges
from sghost.process.spec import ChildSpec


def prepare(spec: ChildSpec, channel: events.EventWriter) -> int | None:
    """Drop to the resource's user, then check its certificate directory as that user."""
    log = logging.getLogger(spec.name)
    try:
        drop_privileges(spec.user, spec.group)
    except PrivilegeError as error:
        return _refuse(log, channel, str(error))
    if spec.certificate_directory is None:
        return None
    for problem in inspect_directory(spec.certificate_directory):
        if problem.warning:
            log.warning("%s; trying anyway (the broker's clock decides)", problem.text)
        else:
            return _refuse(log, channel, problem.text)
    return None


def _refuse(log: logging.Logger, channel: events.EventWriter, text: str) -> int:
    log.error("%s", text)
    channel.send(events.CONNECT_ERROR, text=text, refused=True)
    return EXIT_BROKER_REFUSED
