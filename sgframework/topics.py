"""Names and topics of the Secure Gateway scheme; light enough to import without paho."""

from __future__ import annotations

from sgframework import constants


def validate_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it can be one level of an MQTT topic, else raise ``ValueError``.

    A name must be a non-empty string without ``/``, ``+``, ``#`` or NUL.
    """
    if not isinstance(name, str):
        raise ValueError(f"The {what} must be a string, not {type(name).__name__}: {name!r}")
    if not name:
        raise ValueError(f"The {what} must not be empty")
    bad = [char for char in constants.FORBIDDEN_NAME_CHARACTERS if char in name]
    if bad:
        shown = ", ".join(repr(char) for char in bad)
        raise ValueError(
            f"The {what} {name!r} contains {shown}; names must not contain '/', '+', '#' or NUL"
        )
    return name


def build_topic(prefix: str, servicename: str, signalname: str) -> str:
    """Join the three levels of a Secure Gateway topic."""
    return f"{prefix}/{servicename}/{signalname}"
