"""TLS for the broker connection: the client context (mutual TLS 1.2+) and the broker's alerts, told in words."""

from __future__ import annotations

import logging
import os
import ssl

from sgframework import constants

_LEGACY_TLS_VERSIONS = {
    getattr(ssl, name) for name in ("PROTOCOL_TLSv1", "PROTOCOL_TLSv1_1") if hasattr(ssl, name)
}


_TLS_ALERTS = {
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "it finds this client's certificate expired (or not yet valid by its clock)",
    "TLSV1_ALERT_UNKNOWN_CA": "it does not trust the CA that signed this client's certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "it rejects this client's certificate (OpenSSL says so for one not yet valid too)",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "this client's certificate is not for client authentication",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "this client's certificate is revoked",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "it requires a client certificate",
    "TLSV1_ALERT_ACCESS_DENIED": "it denies this client access",
}


_ALERT_PROBE_TIMEOUT = 0.5


def describe_tls_alert(error: BaseException) -> str | None:
    """``TLSV1_ALERT_UNKNOWN_CA (it does not trust ...)`` for a TLS alert received from the peer, else None."""
    reason = str(getattr(error, "reason", "") or "")
    if not isinstance(error, ssl.SSLError) or "ALERT" not in reason:
        return None
    return f"{reason} ({_TLS_ALERTS[reason]})" if reason in _TLS_ALERTS else reason


class _TlsAlertRecorder(logging.Filter):
    """Keeps the TLS alert a broker sent, which paho logs ("failed to receive on socket") and then drops.

    With TLS 1.3 the broker checks the client's certificate after the client considers the
    handshake done, so its verdict arrives as an alert on the first read. Attached to the
    client's logger; it never suppresses a record.
    """

    def __init__(self) -> None:
        super().__init__()
        self._alert: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, BaseException) and (alert := describe_tls_alert(arg)) is not None:
                self._alert = alert
        return True

    def take(self) -> str | None:
        """The alert received since the last call, or None."""
        alert, self._alert = self._alert, None
        return alert


def create_tls_context(
    certificate_directory: str,
    tls_version: int = ssl.PROTOCOL_TLS_CLIENT,
    insecure: bool = False,
    logger: logging.Logger | None = None,
    file_names: tuple[str, str, str] = (constants.CA_CERTS, constants.CERTFILE, constants.KEYFILE),
) -> ssl.SSLContext:
    """A client context for mutual TLS 1.2+ with the CA, certificate and key in ``certificate_directory``.

    ``insecure`` skips the check that the broker's certificate names the host;
    the chain is still verified. A missing file raises ``FileNotFoundError`` naming it.
    """
    paths = [os.path.join(certificate_directory, name) for name in file_names]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Certificate file not found: {path} (certificate_directory must hold {', '.join(file_names[:2])} "
                f"and {file_names[2]})"
            )
    ca_certs, certfile, keyfile = paths
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_certs)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls_version in _LEGACY_TLS_VERSIONS:
        (logger or logging.getLogger("sgframework")).warning(
            "tls_version %r is obsolete and refused by current brokers; using TLS 1.2 or newer", tls_version
        )
    elif tls_version == getattr(ssl, "PROTOCOL_TLSv1_2", None):
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if insecure:
        context.check_hostname = False
    return context
