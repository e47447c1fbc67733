"""The command-line options for a client of a broker named with ``--broker``: TLS identity, user name, password.

``sghost status --all`` and the ``sghost deploy`` commands that talk to a broker share them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sghost.config.manifest import BrokerConfig


def add_credential_options(parser: argparse.ArgumentParser) -> None:
    """``--certificate-directory``, ``--username``, ``--password-file``: credentials for the ``--broker`` given."""
    parser.add_argument(
        "--certificate-directory", type=Path, metavar="DIR",
        help="with --broker: connect with TLS and the client certificate in DIR "
        "(ca_public_certificate.pem, public_certificate.pem, private_key.pem)",
    )
    parser.add_argument("--username", metavar="NAME", help="with --broker: the broker user name")
    parser.add_argument(
        "--password-file", type=Path, metavar="FILE",
        help="with --broker and --username: a file (mode 0600) holding the password",
    )


def credential_flags(args: argparse.Namespace) -> list[str]:
    """The credential options given on the command line, by their flag."""
    flags = {"--certificate-directory": args.certificate_directory, "--username": args.username,
             "--password-file": args.password_file}
    return [flag for flag, value in flags.items() if value is not None]


def given_credentials(args: argparse.Namespace, command: str = "sghost status") -> BrokerConfig | str:
    """The credentials given with --broker, or the message (starting with ``command``) that says what is wrong."""
    from sghost.config.parsing import check_credential_files

    if args.password_file is not None and args.username is None:
        return f"{command}: --password-file needs --username"
    problems = check_credential_files(command, args.certificate_directory, args.password_file)
    if problems:
        return "\n".join(problems)
    return BrokerConfig(
        certificate_directory=args.certificate_directory, username=args.username, password_file=args.password_file
    )


def broker_credentials(broker: BrokerConfig) -> dict[str, Any]:
    """The manifest's TLS identity and password, for a client of the host's broker."""
    credentials: dict[str, Any] = {"username": broker.username, "password": broker.read_password()}
    if broker.certificate_directory is not None:
        from sgframework.framework import create_tls_context

        credentials["tls_context"] = create_tls_context(str(broker.certificate_directory), insecure=broker.tls_insecure)
    return credentials
