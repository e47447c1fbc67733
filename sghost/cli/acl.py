"""``sghost acl``: the mosquitto ACL that gives a manifest's identities exactly their rights.

Two parts, printed in this order:

- **pattern lines**, the same for every host: each identity (``%u``, the certificate's CN
  with ``use_identity_as_username true``, or the user name) writes only its own
  ``data``/``dataavailable``/``commandavailable``/``resourceavailable`` topics and reads
  only its own ``command`` topics. mosquitto applies pattern lines to every client of
  the broker, so a broker's ACL file holds them once;
- **the host's own lines**: a ``user <host>`` block. With certificates it grants the
  meta-resource write access to ``commandavailable/<res>/#`` and ``dataavailable/<res>/#``
  of this manifest's resources only (it marks a dead resource's capabilities ``False``).
  With passwords (``--passwords``, the default when ``[broker] username`` is set) every
  process of the host logs in as that user, so the block lists the host's topics and
  every resource's.

Several gateways on one broker: the first host's full output, then each other host's
with ``--no-patterns``, appended; see docs/security.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sghost.config.manifest import HostConfig, ManifestError, load_manifest

EXIT_OK = 0
EXIT_CONFIG = 2

OWN_WRITE = ("data", "dataavailable", "commandavailable", "resourceavailable")
"""The topic kinds an identity publishes for itself."""
OWN_READ = ("command",)
CAPABILITIES = ("commandavailable", "dataavailable")
"""What the meta-resource withdraws (retained ``False``) for a resource whose process ended."""


def add_acl_parser(subparsers: Any, add_manifest_option: Any) -> None:
    """Add ``sghost acl [-c M] [--certificates|--passwords] [--no-patterns]``."""
    parser = subparsers.add_parser(
        "acl",
        help="print the mosquitto ACL for the manifest's host and resources",
        description="Print the mosquitto ACL lines for this manifest: the pattern lines every identity needs "
        "and the host's own user block. For several gateways on one broker, append each further host's "
        "output with --no-patterns (pattern lines apply to every client, so the file needs them once).",
    )
    add_manifest_option(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--certificates", dest="mode", action="store_const", const="certificates",
                      help="each resource has its own certificate, CN = its name (default without [broker] username)")
    mode.add_argument("--passwords", dest="mode", action="store_const", const="passwords",
                      help="the host and its resources log in as [broker] username (default when it is set)")
    parser.add_argument("--no-patterns", action="store_true",
                        help="leave out the pattern lines (the broker's ACL file has them already)")
    parser.set_defaults(handler=run_acl, mode=None)


def run_acl(args: argparse.Namespace) -> int:
    try:
        config = load_manifest(args.config)
    except ManifestError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    mode = args.mode or ("passwords" if config.broker.username else "certificates")
    if mode == "passwords" and not config.broker.username:
        print(f"{config.path}: broker.username: not set; expected the user name this host logs in as "
              "(--passwords writes its block)", file=sys.stderr)
        return EXIT_CONFIG
    sys.stdout.write(render_acl(config, mode, patterns=not args.no_patterns))
    return EXIT_OK


def render_acl(config: HostConfig, mode: str = "certificates", patterns: bool = True) -> str:
    """The ACL text for ``config``; ``mode`` is ``certificates`` or ``passwords``."""
    lines: list[str] = []
    if patterns:
        lines += pattern_lines()
    lines += password_block(config) if mode == "passwords" else certificate_block(config)
    return "\n".join(lines) + "\n"


def pattern_lines() -> list[str]:
    """The lines every broker ACL needs once: each identity speaks and listens only as itself."""
    return [
        "# Every identity (%u: the certificate's CN, or the user name) speaks only as itself",
        "# and receives only its own commands. Pattern lines apply to every client of the",
        "# broker: keep one copy of them in the ACL file, whatever the number of gateways.",
        *(f"pattern write {kind}/%u/#" for kind in OWN_WRITE),
        *(f"pattern read {kind}/%u/#" for kind in OWN_READ),
    ]


def _resources(config: HostConfig) -> list[str]:
    return list(config.resources)


def certificate_block(config: HostConfig) -> list[str]:
    """``user <host>``: the meta-resource may withdraw the capabilities of its own resources, no one else's."""
    header = [
        "",
        f"# Host {config.name!r} ({config.path.name}): its meta-resource marks the capabilities of",
        "# its own resources False when their process ends. Regenerate after adding resources.",
        f"user {config.name}",
    ]
    body = [f"topic write {kind}/{name}/#" for name in _resources(config) for kind in CAPABILITIES]
    return header + (body or ["# (no resources)"])


def password_block(config: HostConfig) -> list[str]:
    """``user <username>``: the host and every resource of it log in as one user."""
    user = config.broker.username
    names = [config.name, *_resources(config)]
    lines = [
        "",
        f"# Host {config.name!r} ({config.path.name}): the host and its resources all log in as {user!r},",
        "# so this user gets the topics of each of them, and of no other gateway.",
        f"user {user}",
    ]
    for name in names:
        lines += [f"topic write {kind}/{name}/#" for kind in OWN_WRITE]
        lines += [f"topic read {kind}/{name}/#" for kind in OWN_READ]
    return lines
