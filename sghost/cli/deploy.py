"""``sghost deploy``: the fleet operator's side of deployments (keygen, sign, push, rollout).

- ``keygen DIR`` writes the fleet's Ed25519 key pair: ``fleet.key`` (PKCS#8 PEM,
  mode 0600 from its creation) and ``fleet.pub`` (SubjectPublicKeyInfo PEM).
- ``sign`` turns a manifest (and a requirements file) into a signed document
  (:mod:`sghost.deploy.document`).
- ``push`` publishes one document retained on ``<prefix>command/<host>/deploy``
  and follows ``<prefix>data/<host>/deployment`` until a final state.
- ``rollout`` signs a document per host and pushes them a batch at a time.

Exit codes: 0 successful, 1 rejected/failed/rolled-back (rollout: any host not
successful), 2 a usage or input error (nothing was published), 3 no final state
before ``--timeout`` (push), 4 the broker could not be used (unreachable,
refused the connection, the subscription or the document, or lost), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sghost.cli.brokeroptions import add_credential_options

if TYPE_CHECKING:
    from sghost.cli.deployfollow import DeploymentFollower, Progress, Push
    from sghost.cli.rollout import HostResult
    from sghost.deploy.document import Deployment

KEY_FILE = "fleet.key"
PUBLIC_KEY_FILE = "fleet.pub"
DEFAULT_TIMEOUT = 300.0
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_BROKER = 4
EXIT_INTERRUPTED = 130


class DeployError(Exception):
    """An input the deploy commands cannot use; the text names the file or option and says what is expected."""


# ---------------------------------------------------------------------------
# The command line


def add_deploy_parser(commands: Any) -> Any:
    """Add ``sghost deploy`` to the ``sghost`` command line; return its sub-command action.

    More actions (``deploy status``) are added with ``.add_parser(...)`` on the returned object.
    """
    deploy = commands.add_parser(
        "deploy",
        help="sign deployments and push them to gateways (see docs/deploy.md)",
        description="Fleet deployments: make the fleet key, sign a manifest for a host, push the signed "
        "document through a broker and follow its progress, or roll it out to many hosts in batches. "
        "Exit codes: 0 successful, 1 rejected/failed/rolled-back, 2 bad input, 3 timeout, 4 broker error.",
    )
    actions = deploy.add_subparsers(dest="deploy_command", metavar="ACTION")
    deploy.set_defaults(handler=lambda args: _missing_action(deploy))
    _add_keygen(actions)
    _add_sign(actions)
    _add_push(actions)
    _add_rollout(actions)
    return actions


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _add_keygen(actions: Any) -> None:
    keygen = actions.add_parser(
        "keygen", help=f"write the fleet key pair DIR/{KEY_FILE} (0600) and DIR/{PUBLIC_KEY_FILE}",
        description=f"Write a new Ed25519 key pair: DIR/{KEY_FILE} (PKCS#8 PEM, mode 0600; keep it off the "
        f"gateways) and DIR/{PUBLIC_KEY_FILE} (put it on every gateway, in [deploy] trusted_keys). "
        "An existing key is never overwritten.",
    )
    keygen.add_argument("directory", type=Path, metavar="DIR", help="where to write the two files (made if missing)")
    keygen.set_defaults(handler=run_keygen)


def _add_signing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", type=Path, required=True, metavar="FILE", help=f"the fleet's private key ({KEY_FILE})")
    parser.add_argument(
        "--requirements", type=Path, metavar="FILE",
        help="pip requirement lines pinning each plugin distribution: name==version --hash=sha256:...",
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="the complete manifest the host should run")


def _add_sign(actions: Any) -> None:
    sign = actions.add_parser(
        "sign", help="sign a manifest (and pinned requirements) for one host",
        description="Write the signed deployment document for --host: the manifest's text, the requirement "
        "lines, a sequence number and the Ed25519 signature. Documents over 1 MiB are refused.",
    )
    _add_signing_options(sign)
    sign.add_argument("--host", required=True, help="the target host's name ([host] name of the manifest)")
    sign.add_argument(
        "--sequence", type=int, metavar="N",
        help="the document's sequence, increasing per host (default: the signing time in milliseconds)",
    )
    sign.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="where to write the document")
    sign.set_defaults(handler=run_sign)


def _add_broker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, metavar="HOST[:PORT]", help="the broker the gateways listen on")
    add_credential_options(parser)
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
        help=f"seconds to wait for a host's final state (default: {DEFAULT_TIMEOUT:g})",
    )


def _add_push(actions: Any) -> None:
    push = actions.add_parser(
        "push", help="publish a signed document to its host and follow the deployment",
        description="Publish DOC retained (QoS 1) on <prefix>command/<host>/deploy, follow "
        "<prefix>data/<host>/deployment and print each state. Exit 0 on successful, 1 on "
        "rejected/failed/rolled-back, 3 on timeout (the document stays retained for the host), 4 on a broker error.",
    )
    push.add_argument("document", type=Path, metavar="DOC", help="a document written by 'sghost deploy sign'")
    _add_broker_options(push)
    push.add_argument(
        "--prefix", default="", metavar="P",
        help="the topic prefix the host's uplink uses on that broker, e.g. 'gateways/gw1/'",
    )
    push.set_defaults(handler=run_push)


def _add_rollout(actions: Any) -> None:
    rollout = actions.add_parser(
        "rollout", help="sign a manifest for many hosts and push it a batch at a time",
        description="For each host of --hosts: sign the manifest with {host} replaced by the host's name, "
        "push it on the prefix --prefix-template gives, --batch hosts at a time; no new batch starts once more "
        "than --max-failed hosts have failed. Prints host -> final state; exit 0 if every host is successful.",
    )
    _add_signing_options(rollout)
    rollout.add_argument("--hosts", required=True, metavar="H1,H2,...", help="the hosts, in the order to deploy")
    rollout.add_argument(
        "--prefix-template", default="", metavar="TEMPLATE",
        help="each host's topic prefix on the broker, {host} standing for its name, e.g. 'gateways/{host}/'",
    )
    rollout.add_argument("--batch", type=int, default=1, metavar="K", help="hosts deployed at once (default: 1)")
    rollout.add_argument(
        "--max-failed", type=int, default=0, metavar="F",
        help="start no new batch once more than F hosts have failed (default: 0)",
    )
    _add_broker_options(rollout)
    rollout.set_defaults(handler=run_rollout)


# ---------------------------------------------------------------------------
# keygen


def run_keygen(args: argparse.Namespace) -> int:
    """The ``sghost deploy keygen`` handler."""
    if not _has_cryptography("keygen"):
        return EXIT_USAGE
    try:
        key_path, public_path = write_fleet_keys(args.directory)
    except DeployError as error:
        print(f"sghost deploy keygen: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"fleet key written to {key_path} (mode 0600): keep it secret, and off the gateways")
    print(f"public key written to {public_path}: copy it to each gateway and list it in [deploy] trusted_keys")
    return EXIT_OK


def write_fleet_keys(directory: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 pair into ``directory``; refuse when either file exists."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_path, public_path = directory / KEY_FILE, directory / PUBLIC_KEY_FILE
    existing = [path for path in (key_path, public_path) if path.exists()]
    if existing:
        raise DeployError(
            f"{existing[0]} exists: refusing to overwrite the fleet key (the gateways trust its public key); "
            "move it away first, or choose another directory (rotation: see docs/deploy.md)"
        )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise DeployError(f"{directory}: cannot make the directory: {error.strerror}") from None
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _create_new(key_path, private, 0o600)
    try:
        _create_new(public_path, public, 0o644)
    except DeployError:
        key_path.unlink()
        raise
    return key_path, public_path


def _create_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the first instant (O_EXCL: never replaces a file)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise DeployError(f"{path} exists: refusing to overwrite the fleet key") from None
    except OSError as error:
        raise DeployError(f"{path}: cannot create the file: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        path.unlink(missing_ok=True)
        raise DeployError(f"{path}: cannot write the file: {error.strerror}") from None


# ---------------------------------------------------------------------------
# sign


def run_sign(args: argparse.Namespace) -> int:
    """The ``sghost deploy sign`` handler."""
    if not _has_cryptography("sign"):
        return EXIT_USAGE
    try:
        key = _load_key(args.key)
        requirements = _requirements(args.requirements)
        manifest = _read_manifest(args.manifest)
        sequence = default_sequence() if args.sequence is None else args.sequence
        document = sign_manifest(key, args.host, manifest, requirements, sequence, str(args.manifest))
        _write_document(args.output, document.to_json().encode("utf-8"))
    except DeployError as error:
        print(f"sghost deploy sign: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"deployment {document.id} for {document.host} (sequence {document.sequence}) written to {args.output}")
    return EXIT_OK


def default_sequence() -> int:
    """The signing time in milliseconds: increasing per host without any state kept by the operator."""
    return time.time_ns() // 1_000_000


def sign_manifest(
    key: Any, host: str, manifest: str, requirements: list[str], sequence: int, source: str = "<manifest>"
) -> Deployment:
    """The signed document for ``host``; DeployError when the manifest is not for it or the document too big."""
    from sgframework.topics import validate_name
    from sghost.deploy.document import DocumentError, sign

    try:
        validate_name(host, "host name")
    except ValueError as error:
        raise DeployError(f"--host: {error}") from None
    if sequence < 0:
        raise DeployError(f"--sequence {sequence}: expected a non-negative integer")
    check_manifest_host(manifest, host, source)
    fields = {"host": host, "sequence": sequence, "manifest": manifest, "requirements": requirements}
    try:
        return sign(fields, key)
    except DocumentError as error:
        raise DeployError(f"{source} for {host}: {error}") from None


def check_manifest_host(manifest: str, host: str, source: str) -> None:
    """The manifest must be TOML and run as ``host`` (its ``[host] name``, default ``sghost``)."""
    try:
        data = tomllib.loads(manifest)
    except tomllib.TOMLDecodeError as error:
        raise DeployError(f"{source}: not a valid TOML manifest: {error}") from None
    table = data.get("host")
    name = table.get("name", "sghost") if isinstance(table, dict) else "sghost"
    if name != host:
        raise DeployError(
            f"{source}: [host] name is {name!r} but the document is for host {host!r}; expected the manifest "
            f'of that host (name = "{host}", or name = "{{host}}" with rollout)'
        )


def _load_key(path: Path) -> Any:
    """The fleet key, refused when others than its owner may read or write it (as ssh does)."""
    from sghost.deploy.document import DocumentError, load_private_key

    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as error:
        raise DeployError(f"{path}: cannot read the fleet key: {error.strerror}") from None
    if mode & 0o077:
        raise DeployError(
            f"{path}: the fleet key is readable or writable by group or others (mode {mode:04o}); "
            f"expected mode 0600: run chmod 600 {path}"
        )
    try:
        return load_private_key(path)
    except DocumentError as error:
        raise DeployError(str(error)) from None


def _requirements(path: Path | None) -> list[str]:
    from sghost.deploy.pinning import RequirementsError, read_requirements

    if path is None:
        return []
    try:
        return read_requirements(path)
    except RequirementsError as error:
        raise DeployError(str(error)) from None


def _read_manifest(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise DeployError(f"{path}: cannot read the manifest: {error.strerror}") from None
    except UnicodeDecodeError:
        raise DeployError(f"{path}: not UTF-8 text; expected a TOML manifest") from None


def _write_document(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise DeployError(f"{path}: cannot write the document: {error.strerror}") from None


# ---------------------------------------------------------------------------
# push


def run_push(args: argparse.Namespace) -> int:
    """The ``sghost deploy push`` handler."""
    from sghost.cli.deployfollow import FAILED_STATES, SUCCESSFUL, Push
    from sghost.cli.fleet import FleetError

    try:
        payload, document = read_document(args.document)
        _check_concrete_prefix(args.prefix)
        connection = _broker_connection(args, "sghost deploy push")
    except DeployError as error:
        print(f"sghost deploy push: {error}", file=sys.stderr)
        return EXIT_USAGE
    push = Push(document.host, args.prefix, document.id, payload, args.timeout)
    print(f"{push.host}: pushing deployment {push.deployment_id} (sequence {document.sequence}) "
          f"on {push.command_topic}", flush=True)
    try:
        follower = connection(_print_state, _print_note)
        follower.start(push)
        follower.wait([push])
    except FleetError as error:
        print(f"sghost deploy push: {error}", file=sys.stderr)
        return EXIT_BROKER
    except KeyboardInterrupt:
        kept = f"; the document stays retained on {push.command_topic}" if push.published else ""
        print(f"sghost deploy push: interrupted{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _disconnect_quietly(connection)
    if push.outcome == SUCCESSFUL:
        return EXIT_OK
    if push.outcome in FAILED_STATES:
        return EXIT_FAILED
    last = push.last.state if push.last else "none"
    print(f"sghost deploy push: {push.host}: no final state within {args.timeout:g} s (last state: {last}); "
          f"the document stays retained on {push.command_topic} for the host to take when it connects",
          file=sys.stderr)
    return EXIT_TIMEOUT


def read_document(path: Path) -> tuple[bytes, Deployment]:
    """The document file's bytes and fields, refused over 1 MiB or when malformed."""
    from sgframework.topics import validate_name
    from sghost.deploy.document import MAX_DOCUMENT_BYTES, DocumentError, parse

    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise DeployError(f"{path}: document is {size} bytes; at most {MAX_DOCUMENT_BYTES} (1 MiB) are accepted")
        payload = path.read_bytes()
    except OSError as error:
        raise DeployError(f"{path}: cannot read the document: {error.strerror}") from None
    try:
        document = parse(payload)
    except DocumentError as error:
        raise DeployError(f"{path}: {error}") from None
    try:
        validate_name(document.host, "document's host")
    except ValueError as error:
        raise DeployError(f"{path}: {error}; expected the host's name (one topic level)") from None
    return payload, document


def _check_concrete_prefix(prefix: str) -> None:
    if prefix and (not prefix.endswith("/") or prefix.startswith("/") or any(char in prefix for char in "+#")):
        raise DeployError(f"--prefix {prefix!r}: expected topic levels ending in '/', without '+' or '#'")


def _print_state(push: Push, progress: Progress) -> None:
    print(f"{push.host}: {progress.describe()}", flush=True)


def _print_note(push: Push, text: str) -> None:
    print(f"{push.host}: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# rollout


def run_rollout(args: argparse.Namespace) -> int:
    """The ``sghost deploy rollout`` handler."""
    from sghost.cli.rollout import (
        check_batch_options,
        check_prefix_template,
        format_results,
        parse_hosts,
        run_batches,
    )

    if not _has_cryptography("rollout"):
        return EXIT_USAGE
    try:
        hosts = _option("--hosts", parse_hosts, args.hosts)
        _option("--prefix-template", check_prefix_template, args.prefix_template)
        check_batch_options(args.batch, args.max_failed)
        documents = sign_for_hosts(args, hosts)
        connection = _broker_connection(args, "sghost deploy rollout")
    except (DeployError, ValueError) as error:
        print(f"sghost deploy rollout: {error}", file=sys.stderr)
        return EXIT_USAGE
    batches = _Batches(args, documents, connection)
    try:
        results = run_batches(hosts, args.batch, args.max_failed, batches.run)
    except KeyboardInterrupt:
        print("sghost deploy rollout: interrupted; documents already pushed stay retained for their hosts",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _disconnect_quietly(connection)
    print(format_results(results))
    if batches.broker_error is not None:
        print(f"sghost deploy rollout: {batches.broker_error}", file=sys.stderr)
        return EXIT_BROKER
    return EXIT_OK if all(result.successful for result in results.values()) else EXIT_FAILED


def _option(flag: str, check: Callable[[str], Any], value: str) -> Any:
    """``check(value)``, its ValueError turned into a DeployError naming ``flag``."""
    try:
        return check(value)
    except ValueError as error:
        raise DeployError(f"{flag} {error}") from None


def sign_for_hosts(args: argparse.Namespace, hosts: list[str]) -> dict[str, Deployment]:
    """One signed document per host, ``{host}`` in the manifest replaced by its name; all signed before any push."""
    from sghost.cli.rollout import expand

    key = _load_key(args.key)
    requirements = _requirements(args.requirements)
    template = _read_manifest(args.manifest)
    sequence = default_sequence()
    return {
        host: sign_manifest(key, host, expand(template, host), requirements, sequence, f"{args.manifest} ({host})")
        for host in hosts
    }


class _Batches:
    """Pushes one batch over the rollout's single connection; after a broker error, starts nothing more."""

    def __init__(self, args: argparse.Namespace, documents: dict[str, Deployment], connection: _Connection) -> None:
        self.args = args
        self.documents = documents
        self.connection = connection
        self.follower: DeploymentFollower | None = None
        self.broker_error: str | None = None

    def run(self, group: list[str]) -> dict[str, HostResult]:
        from sghost.cli.deployfollow import Push
        from sghost.cli.fleet import FleetError
        from sghost.cli.rollout import NOT_STARTED, HostResult, expand

        if self.broker_error is not None:
            return {host: HostResult(NOT_STARTED, reason="no connection to the broker") for host in group}
        pushes = []
        for host in group:
            document = self.documents[host]
            payload = document.to_json().encode("utf-8")
            pushes.append(Push(host, expand(self.args.prefix_template, host), document.id, payload, self.args.timeout))
        try:
            if self.follower is None:
                self.follower = self.connection(_print_state, _print_note)
        except FleetError as error:
            self.broker_error = str(error)
            return {host: HostResult(NOT_STARTED, reason="no connection to the broker") for host in group}
        try:
            for push in pushes:
                print(f"{push.host}: pushing deployment {push.deployment_id} on {push.command_topic}", flush=True)
                self.follower.start(push)
            self.follower.wait(pushes)
        except FleetError as error:
            self.broker_error = str(error)
        return {push.host: _result(push, self.broker_error) for push in pushes}


def _result(push: Push, broker_error: str | None) -> HostResult:
    """A finished (or abandoned) push as a row of the rollout's table."""
    from sghost.cli.deployfollow import TIMEOUT
    from sghost.cli.rollout import UNKNOWN, HostResult

    last = push.last
    generation = last.generation if last else None
    if push.outcome is None:
        reason = f"outcome unknown: {broker_error}" if broker_error else "outcome unknown"
        return HostResult(UNKNOWN, generation, push.deployment_id, reason)
    if push.outcome == TIMEOUT:
        reason = f"no final state within {push.timeout:g} s (last state: {last.state if last else 'none'})"
        return HostResult(TIMEOUT, generation, push.deployment_id, reason)
    return HostResult(push.outcome, generation, push.deployment_id, last.reason if last else None)


# ---------------------------------------------------------------------------
# The broker connection shared by push and rollout


class _Connection:
    """Connects on first use (so that input errors are reported before the network is touched).

    MQTT 5 first, so that a broker refusing the document says so; a broker that
    speaks only MQTT 3.1.1 (nats-server, amqtt) is then used with 3.1.1, with a warning.
    """

    def __init__(self, host: str, port: int, timeout: float, credentials: dict[str, Any]) -> None:
        self.host, self.port, self.timeout, self.credentials = host, port, timeout, credentials
        self.client: Any = None
        self.follower: DeploymentFollower | None = None

    def __call__(
        self, on_state: Callable[[Push, Progress], None], on_note: Callable[[Push, str], None]
    ) -> DeploymentFollower:
        import paho.mqtt.client as mqtt

        from sghost.cli.fleet import FleetError

        try:
            return self._connect(mqtt.MQTTv5, on_state, on_note)
        except FleetError:
            if self.follower is None or not self.follower.unsupported_protocol:
                raise
        _disconnect_quietly(self)
        print(f"sghost deploy: the broker {self.host}:{self.port} does not speak MQTT 5; using MQTT 3.1.1, "
              "with which a broker that refuses the document (ACL) drops it without saying so", file=sys.stderr)
        return self._connect(mqtt.MQTTv311, on_state, on_note)

    def _connect(
        self, protocol: int, on_state: Callable[[Push, Progress], None], on_note: Callable[[Push, str], None]
    ) -> DeploymentFollower:
        from sghost.cli.deployfollow import DeploymentFollower
        from sghost.cli.fleet import connect, new_client

        connect_timeout = min(self.timeout, 30.0)
        self.client = new_client(connect_timeout, protocol=protocol, **self.credentials)
        self.follower = DeploymentFollower(self.client, f"{self.host}:{self.port}", on_state, on_note)
        connect(self.client, self.host, self.port, connect_timeout)
        self.follower.wait_connected(connect_timeout)
        return self.follower


def _broker_connection(args: argparse.Namespace, command: str) -> _Connection:
    from sghost.cli.brokeroptions import broker_credentials, given_credentials
    from sghost.cli.fleet import parse_broker

    try:
        host, port = parse_broker(args.broker)
    except ValueError as error:
        raise DeployError(f"--broker {error}") from None
    if args.timeout <= 0:
        raise DeployError(f"--timeout {args.timeout:g}: expected a number of seconds above 0")
    given = given_credentials(args, command)
    if isinstance(given, str):
        raise DeployError(given.removeprefix(f"{command}: "))
    try:
        credentials = broker_credentials(given)
    except (OSError, ValueError) as error:
        raise DeployError(f"cannot use the broker credentials: {error}") from None
    return _Connection(host, port, args.timeout, credentials)


def _disconnect_quietly(connection: _Connection) -> None:
    if connection.client is not None:
        connection.client.disconnect()


def _has_cryptography(action: str) -> bool:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        from sghost.deploy.document import INSTALL_HINT

        print(f"sghost deploy {action}: {INSTALL_HINT}", file=sys.stderr)
        return False
    return True
