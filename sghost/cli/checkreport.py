"""What ``sghost check`` adds to a manifest that loaded: its warnings, and the certificates' problems."""

from __future__ import annotations

import sys

from sghost.config.certificates import review_manifest
from sghost.config.manifest import HostConfig


def report_check(config: HostConfig) -> bool:
    """Print the manifest's warnings and every certificate problem to stderr; False when one is an error.

    Warnings (``tls_insecure``, a resource speaking as the host, a certificate not yet
    valid) do not fail the check; an expired certificate, one not signed by its directory's
    CA, or a key that does not match it does.
    """
    errors, certificate_warnings = review_manifest(config)
    for line in (*config.warnings, *certificate_warnings):
        print(f"warning: {line}", file=sys.stderr)
    for line in errors:
        print(line, file=sys.stderr)
    return not errors
