"""The manifest (``hostconfig.toml``): parsed with tomllib and validated into typed configuration.

:func:`load_manifest` checks every key and raises :class:`ManifestError` with every
problem at once, one per line, each as ``<file>: <key path>: <what is wrong>; <what is
expected>``, for example::

    hostconfig.toml: resources.taxisign.restrat: unknown key; did you mean "restart"?

Relative paths in the manifest are relative to the manifest's directory. A resource
with ``enabled = false`` gets the same key, type and range checks as any other, but its
environment is not checked (its type need not be installed, its certificate files need
not exist and its settings are not handed to the plugin's check), since it is not started.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from sgframework import constants
from sgframework.addresses import parse_address
from sghost.config import brokerkind, dependencies, deploy, environment, uplink
from sghost.config.dashboard import TABLE as DASHBOARD_TABLE
from sghost.config.dashboard import DashboardConfig, read_dashboard
from sghost.config.deploy import DeployConfig
from sghost.config.identities import review as review_identities
from sghost.config.integrations import TABLES as INTEGRATION_TABLES
from sghost.config.integrations import HomeAssistantConfig, HooksConfig, MetricsConfig, read_integrations
from sghost.config.parsing import (
    BAD,
    CERTIFICATE_FILES,
    LOOPBACK_HOSTS,
    Parser,
    Problems,
    as_table,
    boolean,
    check_certificate_directory,
    check_directory,
    check_password_file,
    choice,
    file_path,
    integer,
    key_path,
    mqtt_name,
    name_problem,
    number,
    read_table,
    show,
    string,
)
from sghost.config.uplink import UplinkConfig
from sghost.plugins import settings_directory_set
from sghost.suggest import did_you_mean

RESTART_CHOICES = ("always", "on-failure", "never")
"""The values of ``restart``."""
PROTOCOLS = ("MQTTv31", "MQTTv311", "MQTTv5")
"""The values of ``[broker] protocol``."""
BROKER_KINDS = ("mqtt", "nats")
"""The values of ``[broker] kind``: a complete MQTT broker, or nats-server's MQTT listener (docs/cluster.md)."""
TABLES = ("host", "broker", "uplink", "defaults", "resources", *INTEGRATION_TABLES, "deploy", DASHBOARD_TABLE)
"""The top-level tables of a manifest."""

CheckSettings = Callable[[str, str, Mapping[str, Any]], list[str]]
"""``check_settings(resource_name, type, settings)`` returns the problems of a resource's settings."""


class ManifestError(Exception):
    """The manifest cannot be used; ``problems`` lists every reason, one line each.

    ``str(error)`` is all problems, one per line. ``path`` is the manifest's absolute path.
    """

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = list(problems)


@dataclass(frozen=True)
class RestartPolicy:
    """How a resource is restarted; from ``[defaults]``, each key overridable per resource."""

    restart: str = "always"
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_restarts: int = 5
    restart_window: float = 60.0
    stop_timeout: float = 5.0
    watchdog: float = 0.0
    max_memory_mb: float = 0.0
    ready_timeout: float = 30.0
    restart_with_dependencies: bool = False


@dataclass(frozen=True)
class BrokerConfig:
    """The ``[broker]`` table: where and how every resource connects.

    Holds the password file's path, never the password: read it with :meth:`read_password`
    when connecting, so it appears in no repr, log or health report.
    """

    host: str | tuple[str, ...] = "localhost"
    """One host name, or several ``host:port`` tried in turn (a broker cluster)."""
    port: int = constants.DEFAULT_PORT
    embedded: bool = False
    kind: str = "mqtt"
    certificate_directory: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    qos: int = constants.DEFAULT_QOS
    keepalive: int = constants.DEFAULT_KEEPALIVE_TIME
    protocol: str = "MQTTv311"
    tls_insecure: bool = False
    require_resource_identity: bool = False

    def read_password(self) -> str | None:
        """Return the password from ``password_file`` without its trailing newline, or None without one."""
        if self.password_file is None:
            return None
        return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")


@dataclass(frozen=True)
class ResourceConfig:
    """One ``[resources.<name>]`` table.

    ``table`` is the table as written in the manifest (for :meth:`fingerprint`);
    ``settings`` is a copy of its ``settings`` table, handed to the plugin as-is.
    """

    name: str
    type: str
    settings: dict[str, Any] = field(default_factory=dict)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    certificate_directory: Path | None = None
    enabled: bool = True
    table: dict[str, Any] = field(default_factory=dict, repr=False)
    depends_on: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    """Added to the supervisor's environment in the resource's process (sghost.config.environment)."""
    user: str | None = None
    """The Unix user the process runs as (own table, else ``[defaults]``); None: sghost's own."""
    group: str | None = None

    def fingerprint(self) -> str:
        """Return a canonical text of the resource's table: a changed table gives a different value.

        A change of ``[defaults]`` alone leaves it unchanged; compare ``policy`` for that.
        (Not a cryptographic hash on purpose: hashlib would load OpenSSL, about 3.7 MiB,
        into the supervisor.)
        """
        source = self.table or {
            "type": self.type,
            "enabled": self.enabled,
            "settings": self.settings,
            **dataclasses.asdict(self.policy),
        }
        document = {
            "name": self.name, "table": source, "certificate_directory": self.certificate_directory,
            "environment": self.environment,
            "user": self.user, "group": self.group,
        }
        return json.dumps(document, sort_keys=True, default=str, ensure_ascii=False)


@dataclass(frozen=True)
class HostConfig:
    """A whole validated manifest.

    ``warnings`` holds lines (same format as problems) about valid but risky settings,
    such as ``tls_insecure = true``; log them at every start.
    """

    path: Path
    name: str = "sghost"
    health_interval: float = 5.0
    remote_control: bool = False
    log_dir: Path | None = None
    log_max_bytes: int = 1_048_576
    log_backups: int = 3
    runtime_dir: Path | None = None
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    defaults: RestartPolicy = field(default_factory=RestartPolicy)
    resources: dict[str, ResourceConfig] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    uplink: UplinkConfig | None = None
    """The ``[uplink]`` table, or None without one."""
    deploy: DeployConfig | None = None
    """The ``[deploy]`` table, or None without one."""
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    """The ``[dashboard]`` table (off unless ``enabled = true``)."""


# ---------------------------------------------------------------------------
# Tables

_POLICY_SPECS: dict[str, Parser] = {
    "restart": choice("a restart policy", RESTART_CHOICES),
    "backoff_initial": number(0, strict=True),
    "backoff_max": number(0, strict=True),
    "max_restarts": integer(1),
    "restart_window": number(0, strict=True),
    "stop_timeout": number(0, strict=True),
    "watchdog": number(0, strict=False),
    "max_memory_mb": number(0, strict=False),
    "ready_timeout": number(0, strict=True),
    "restart_with_dependencies": boolean,
}


def _environment_table(problems: Problems, keypath: str, value: Any) -> Any:
    table = environment.parse_table(problems, keypath, value)
    return BAD if table is None else table


def _depends_on(problems: Problems, keypath: str, value: Any) -> Any:
    names = dependencies.parse_depends_on(problems, keypath, value)
    return BAD if names is None else names


_ENVIRONMENT_SPECS: dict[str, Parser] = {"environment": _environment_table, "env_file": file_path}
_DEFAULTS_SPECS: dict[str, Parser] = {**_POLICY_SPECS, **_ENVIRONMENT_SPECS}

_HOST_SPECS: dict[str, Parser] = {
    "name": mqtt_name,
    "health_interval": number(0, strict=True),
    "remote_control": boolean,
    "log_dir": file_path,
    "log_max_bytes": integer(1024),
    "log_backups": integer(0, 100),
    "runtime_dir": file_path,
}

def _broker_hosts(problems: Problems, keypath: str, value: Any) -> Any:
    """Parse one host name, or an array of ``host:port`` (a cluster, tried in turn)."""
    if isinstance(value, str):
        return string(problems, keypath, value)
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        return problems.wrong_type(keypath, value, 'a host name or a non-empty array of "host:port"')
    for item in value:
        try:
            parse_address(item, constants.DEFAULT_PORT)
        except ValueError as error:
            return problems.add(keypath, f"{error}; expected \"host:port\"")
    return tuple(value)


_BROKER_SPECS: dict[str, Parser] = {
    "host": _broker_hosts,
    "kind": choice("a broker kind", BROKER_KINDS),
    "port": integer(1, 65535),
    "embedded": boolean,
    "certificate_directory": file_path,
    "username": string,
    "password_file": file_path,
    "qos": integer(0, 2),
    "keepalive": integer(1, 65535),
    "protocol": choice("an MQTT protocol version", PROTOCOLS),
    "tls_insecure": boolean,
    "require_resource_identity": boolean,
}

_ACCOUNT_SPECS: dict[str, Parser] = {"user": string, "group": string}
"""The Unix account of a resource's process (sghost.config.identities checks it)."""

_RESOURCE_SPECS: dict[str, Parser] = {
    "type": string,
    "enabled": boolean,
    "settings": lambda problems, keypath, value: value,  # checked in _read_resource
    "certificate_directory": file_path,
    "depends_on": _depends_on,
    **_ENVIRONMENT_SPECS,
    **_POLICY_SPECS,
    **_ACCOUNT_SPECS,
}


def _merge_policy(
    problems: Problems, parts: tuple[str, ...], values: Mapping[str, Any], base: RestartPolicy
) -> RestartPolicy:
    """Return ``base`` with the policy keys of ``values``; check backoff_max >= backoff_initial."""
    own = {key: value for key, value in values.items() if key in _POLICY_SPECS}
    policy = dataclasses.replace(base, **own)
    if policy.backoff_max < policy.backoff_initial:
        if "backoff_max" in own:
            problems.add(
                key_path(*parts, "backoff_max"),
                f"{policy.backoff_max:g} is less than backoff_initial {policy.backoff_initial:g}; "
                "expected backoff_max >= backoff_initial",
            )
        elif "backoff_initial" in own:
            problems.add(
                key_path(*parts, "backoff_initial"),
                f"{policy.backoff_initial:g} is more than backoff_max {policy.backoff_max:g}; "
                "expected backoff_initial <= backoff_max",
            )
    return policy


def _read_host(problems: Problems, table: Mapping[str, Any]) -> dict[str, Any]:
    """Parse ``[host]`` into HostConfig keyword arguments."""
    values = read_table(problems, ("host",), table, _HOST_SPECS)
    for key in ("log_dir", "runtime_dir"):
        if key in values:
            check_directory(problems, key_path("host", key), values[key])
    return values


def _read_broker(problems: Problems, table: Mapping[str, Any]) -> BrokerConfig:
    """Parse ``[broker]``, checking its certificate and password files."""
    values = read_table(problems, ("broker",), table, _BROKER_SPECS)
    if "certificate_directory" in values:
        check_certificate_directory(problems, "broker.certificate_directory", values["certificate_directory"])
    if "password_file" in values:
        check_password_file(problems, "broker.password_file", values["password_file"])
        if "username" not in table:
            problems.add("broker.password_file", "set without broker.username; expected broker.username as well")
    broker = BrokerConfig(**values)
    if broker.embedded and (not isinstance(broker.host, str) or broker.host not in LOOPBACK_HOSTS):
        problems.add(
            "broker.host",
            f"{show(broker.host)} with embedded = true; expected one of "
            + ", ".join(f'"{host}"' for host in LOOPBACK_HOSTS)
            + " (the embedded broker listens on loopback only)",
        )
    if broker.tls_insecure:
        problems.warn(
            "broker.tls_insecure",
            "true: the broker's certificate is not checked against the host name; use it only for testing",
        )
    return broker


@dataclass
class _ResourceContext:
    """What every resource table is checked against."""

    host_name: str
    defaults: RestartPolicy
    accounts: Mapping[str, str]
    known_types: Collection[str] | None
    check_settings: CheckSettings | None
    environment: dict[str, str] = field(default_factory=dict)
    """The variables of ``[defaults]`` (its env_file, then its environment table)."""


def _check_type(problems: Problems, keypath: str, type_name: str, known_types: Collection[str]) -> bool:
    """Record a problem and return False if ``type_name`` is not an installed resource type."""
    if type_name in known_types:
        return True
    installed = ", ".join(sorted(known_types)) or "none (install a plugin that provides it)"
    suggestion = did_you_mean(type_name, known_types)
    tail = f"; {suggestion}" if suggestion else ""
    problems.add(keypath, f"unknown resource type {show(type_name)}; installed types: {installed}{tail}")
    return False


def _missing_type(problems: Problems, keypath: str, known_types: Collection[str] | None) -> None:
    """Record a resource table without ``type``."""
    message = 'missing key "type"; expected type = "<resource type>" naming an installed plugin'
    if known_types is not None:
        message += "; installed types: " + (", ".join(sorted(known_types)) or "none")
    problems.add(keypath, message)


def _run_check_settings(
    problems: Problems, name: str, type_name: str, settings: dict[str, Any], check: CheckSettings
) -> None:
    """Record the problems the plugin's settings check reports, under ``resources.<name>.settings``."""
    keypath = key_path("resources", name, "settings")
    try:
        with settings_directory_set(problems.base):  # relative paths in settings: the manifest's directory
            found = list(check(name, type_name, settings))
    except Exception as error:
        problems.add(
            keypath,
            f"the settings check of type {show(type_name)} failed with {type(error).__name__}: {error}; "
            "expected the plugin to report problems, not raise (a bug in the plugin)",
        )
        return
    for problem in found:
        problems.add(keypath, " ".join(str(problem).splitlines()))


def _read_settings(problems: Problems, name: str, value: Any) -> dict[str, Any] | None:
    """Return a deep copy of a resource's ``settings`` table, or None if it is not a table."""
    table = as_table(problems, ("resources", name, "settings"), value)
    return None if table is None else _deepcopy(table)


def _deepcopy(value: Any) -> Any:
    """Copy nested TOML tables and arrays (their leaves are immutable)."""
    if isinstance(value, dict):
        return {key: _deepcopy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deepcopy(item) for item in value]
    return value


def _read_resource(problems: Problems, name: str, raw: Any, context: _ResourceContext) -> ResourceConfig | None:
    """Parse one ``[resources.<name>]`` table; None if it is not a table."""
    parts = ("resources", name)
    reason = name_problem(name, "resource name")
    if reason is not None:
        problems.add(key_path(*parts), reason)
    elif name == context.host_name:
        problems.add(
            key_path(*parts),
            f"same name as [host] name {show(name)}; expected a different name (they would share topics)",
        )
    table = as_table(problems, parts, raw)
    if table is None:
        return None
    hint = f" (plugin settings go under [{key_path(*parts, 'settings')}])"
    values = read_table(problems, parts, table, _RESOURCE_SPECS, hint)
    settings = _read_settings(problems, name, table["settings"]) if "settings" in table else {}
    if "type" not in table:
        _missing_type(problems, key_path(*parts), context.known_types)
    enabled = values.get("enabled", True)
    type_name = values.get("type")
    variables: dict[str, str] = {}
    if enabled:
        _check_environment(problems, name, values, settings, context)
        variables = {**context.environment, **environment.merge(problems, [(key_path(*parts), _source(values))])}
    policy = _merge_policy(problems, parts, values, context.defaults)
    return ResourceConfig(
        name=name,
        type=type_name or "",
        settings=settings or {},
        policy=policy,
        certificate_directory=values.get("certificate_directory"),
        enabled=enabled,
        table=_deepcopy(table),
        depends_on=values.get("depends_on", ()),
        environment=variables,
        user=values.get("user", context.accounts.get("user")),
        group=values.get("group", context.accounts.get("group")),
    )


def _source(values: Mapping[str, Any]) -> environment.EnvironmentSource:
    return environment.EnvironmentSource(values.get("environment", {}), values.get("env_file"))


def _check_dependencies(problems: Problems, resources: Mapping[str, ResourceConfig]) -> None:
    graph = {name: resource.depends_on for name, resource in resources.items()}
    for name, message in dependencies.dependency_problems(graph).items():
        problems.add(key_path("resources", name, "depends_on"), message)


def _check_environment(
    problems: Problems,
    name: str,
    values: Mapping[str, Any],
    settings: dict[str, Any] | None,
    context: _ResourceContext,
) -> None:
    """Check what an enabled resource needs to start: its type, certificates and settings."""
    if "certificate_directory" in values:
        keypath = key_path("resources", name, "certificate_directory")
        check_certificate_directory(problems, keypath, values["certificate_directory"])
    type_name = values.get("type")
    if type_name is None:
        return
    if context.known_types is not None and not _check_type(
        problems, key_path("resources", name, "type"), type_name, context.known_types
    ):
        return
    if context.check_settings is not None and settings is not None:
        _run_check_settings(problems, name, type_name, settings, context.check_settings)


def _read_resources(problems: Problems, raw: Any, context: _ResourceContext) -> dict[str, ResourceConfig]:
    """Parse ``[resources]``: every sub-table, in manifest order."""
    table = as_table(problems, ("resources",), raw)
    resources: dict[str, ResourceConfig] = {}
    for name, value in (table or {}).items():
        resource = _read_resource(problems, name, value, context)
        if resource is not None:
            resources[name] = resource
    return resources


def _read_sections(problems: Problems, document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the top-level tables (empty when absent); report unknown and non-table ones."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in document.items():
        if key not in TABLES:
            suggestion = did_you_mean(key, TABLES)
            expected = suggestion or "expected one of the tables " + ", ".join(f"[{t}]" for t in TABLES)
            problems.add(key_path(key), f"unknown {'table' if isinstance(value, dict) else 'key'}; {expected}")
    for name in TABLES:
        if name == "resources":
            continue  # _read_resources reports a non-table [resources]
        value = document.get(name, {})
        sections[name] = as_table(problems, (name,), value) or {}
    return sections


# ---------------------------------------------------------------------------
# Loading


def _read_bytes(absolute: Path, fail: Callable[[str], ManifestError]) -> bytes:
    try:
        return absolute.read_bytes()
    except FileNotFoundError:
        raise fail("file not found; create it or pass -c PATH") from None
    except IsADirectoryError:
        raise fail("is a directory; expected a TOML file") from None
    except OSError as error:
        raise fail(f"cannot read: {error.strerror}; expected a readable TOML file") from None


def _parse_file(absolute: Path, shown: str, text: str | None = None) -> dict[str, Any]:
    """Read and parse the TOML file (or ``text`` in its place); raise ManifestError with one problem if that fails."""

    def fail(message: str) -> ManifestError:
        return ManifestError(absolute, [f"{shown}: {message}"])

    data = text.encode("utf-8") if text is not None else _read_bytes(absolute, fail)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise fail(f"not UTF-8 text (byte {error.start}); expected a UTF-8 TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise fail(f"TOML syntax error: {error}; expected valid TOML (https://toml.io)") from None


def load_manifest(
    path: str | Path,
    known_types: Collection[str] | None = None,
    check_settings: CheckSettings | None = None,
    text: str | None = None,
) -> HostConfig:
    """Read and validate the manifest at ``path``; raise ManifestError listing every problem.

    :param known_types: the installed resource types; when given, an enabled resource of
        another type is a problem (with a did-you-mean).
    :param check_settings: ``check_settings(resource_name, type, settings)`` returns the
        problems of an enabled resource's settings (strings), reported under
        ``resources.<name>.settings``. Called only for a known type and a valid settings table.
    :param text: the manifest's text, read as if it were the file at ``path`` (a deployed
        generation: its relative paths resolve against ``path``'s directory).
    """
    shown = str(path)
    absolute = Path(os.path.abspath(Path(path).expanduser()))
    document = _parse_file(absolute, shown, text)
    problems = Problems(shown, absolute.parent)
    sections = _read_sections(problems, document)
    host = _read_host(problems, sections["host"])
    broker = _read_broker(problems, sections["broker"])
    default_values = read_table(
        problems, ("defaults",), sections["defaults"], {**_DEFAULTS_SPECS, **_ACCOUNT_SPECS}
    )
    defaults = _merge_policy(problems, ("defaults",), default_values, RestartPolicy())
    default_environment = environment.merge(problems, [("defaults", _source(default_values))])
    accounts = {key: value for key, value in default_values.items() if key in _ACCOUNT_SPECS}
    context = _ResourceContext(
        host.get("name", "sghost"), defaults, accounts, known_types, check_settings, default_environment
    )
    resources = _read_resources(problems, document.get("resources", {}), context)
    _check_dependencies(problems, resources)
    integrations = read_integrations(problems, sections)
    dashboard = read_dashboard(problems, sections[DASHBOARD_TABLE])
    own_keys = {name: set(resource.table) for name, resource in resources.items()}
    for finding in review_identities(context.host_name, broker, resources, key_path, own_keys.__getitem__):
        (problems.add if finding.error else problems.warn)(finding.keypath, finding.message)

    uplink_config = uplink.read_uplink(problems, sections["uplink"], context.host_name, broker.embedded)
    deploy_config = deploy.read_deploy(problems, sections["deploy"], context.host_name, uplink_config)
    brokerkind.check(problems, broker, context.host_name, resources)
    if problems.lines:
        raise ManifestError(absolute, problems.lines)
    return HostConfig(
        path=absolute,
        broker=broker,
        defaults=defaults,
        resources=resources,
        warnings=tuple(problems.warnings),
        **integrations,
        uplink=uplink_config,
        deploy=deploy_config,
        dashboard=dashboard,
        **host,
    )


# ---------------------------------------------------------------------------
# The documented default manifest

_EXAMPLE = """\
# sghost manifest: what this host runs and how. See docs for details.
# Every key is optional except each resource's `type`; commented values are the defaults.
# Relative paths are relative to this file's directory.

[host]
{host_name}# name = "sghost"               # MQTT name of the meta-resource; unique per gateway on a shared broker
# health_interval = 5.0         # seconds between health reports
# remote_control = false        # accept restart/stop/start/rebirth commands over MQTT
# log_dir = "logs"              # (unset by default) per-resource log files <log_dir>/<resource>.log
# log_max_bytes = 1048576       # rotate a resource's log file at this size
# log_backups = 3               # rotated files kept per resource (0..100)
# runtime_dir = "run"           # (unset by default: chosen by sghost) control socket and state

[broker]
# host = "localhost"           # or a cluster: ["node1:1883", "node2:1883"], tried in turn
# port = 1883
# kind = "mqtt"                 # "mqtt" | "nats" (nats-server's MQTT listener: docs/cluster.md)
{embedded}# embedded = false              # true: start a local broker for this host (loopback only)
# certificate_directory = "certs"  # (unset by default) TLS: holds {certificate_files}
# username = "gateway"          # (unset by default)
# password_file = "broker.password"  # (unset by default) needs username; must be chmod 600
# qos = 1                       # 0..2
# keepalive = 10                # seconds
# protocol = "MQTTv311"         # "MQTTv31" | "MQTTv311" | "MQTTv5"
# tls_insecure = false          # true: do not check that the broker's certificate names host (testing only)
# require_resource_identity = false  # true: under TLS, a resource without its own certificate_directory is an error

# [uplink]                      # (off by default) bridge the embedded broker to a central one (docs/manifest.md)
# address = "central.example.com:8883"
# remote_prefix = "gateways/<host name>/"

[defaults]                      # restart policy for every resource; each may override under its own table
# restart = "always"            # "always" | "on-failure" | "never"
# backoff_initial = 0.5         # seconds before the first restart of a resource that keeps failing
# backoff_max = 30.0
# max_restarts = 5              # failures within restart_window after which the resource is "fatal"
# restart_window = 60.0
# stop_timeout = 5.0            # SIGTERM, then SIGKILL after this many seconds
# watchdog = 0.0                # seconds without a heartbeat before a hung resource is killed; 0 = off
# max_memory_mb = 0.0           # restart a resource above this resident memory; 0 = off
# ready_timeout = 30.0          # seconds a ready="signal" type has to call context.ready(); then it failed
# restart_with_dependencies = false  # true: restart once a dependency that died is ready again
# environment = {{ TZ = "UTC" }}  # (unset by default) added to every resource's process environment
# env_file = "sghost.env"       # (unset by default) KEY=value lines, systemd EnvironmentFile syntax

# [homeassistant]               # Home Assistant MQTT discovery (docs/homeassistant.md)
# discovery = false             # true: publish discovery configs for the gateway and each resource
# prefix = "homeassistant"      # Home Assistant's discovery prefix

# [metrics]                     # Prometheus text for node_exporter's textfile collector
# textfile = "/var/lib/node_exporter/textfile_collector/sghost.prom"  # (unset by default) every health_interval

# [dashboard]                   # the gateway's own web page and API (docs/dashboard.md); off by default
# enabled = false               # true: serve the page
# listen = "127.0.0.1:8080"     # beyond loopback only with token_file
# token_file = "dashboard.token"  # (unset by default) the login token; must be chmod 600
# certificate_directory = "certs/dashboard"  # (unset by default) TLS: public_certificate.pem, private_key.pem
# control = false               # true: start, stop and restart buttons (and POST in the API)
# hosts = ["gateway.local"]     # (none by default) names a browser may use besides the listen address
# watchdog = 30.0               # seconds without a heartbeat before the page's process is restarted; 0 = off

# [hooks]                       # programs run on state changes: argv arrays, no shell; each unset by default
# on_state = ["/usr/local/bin/notify", "--flag"]  # every state change of a resource
# on_fatal = ["/usr/local/bin/notify"]    # a resource enters fatal
# on_backoff = ["/usr/local/bin/notify"]  # a resource enters backoff
# on_restart = ["/usr/local/bin/notify"]  # a new process for a resource after an earlier one ended
# hook_timeout = 10.0           # seconds before a hook is ended (SIGTERM, then SIGKILL)
# user = "sghost-res"           # (unset by default) Unix user each resource runs as; needs sghost run as root
# group = "sghost-res"          # (unset by default) its group; default: the user's primary group

{resource}"""

_EXAMPLE_RESOURCE = """\
{c}[resources.{key}]             # the table key is the resource's MQTT name
{c}type = "{type}"              # a resource type registered by an installed plugin (`sghost plugins`)
# enabled = true                # false: keep it here but do not start it
# certificate_directory = "certs/{name}"  # (unset by default) this resource's own TLS identity
# depends_on = ["canbus"]       # (none by default) start only once these resources are ready
# environment = {{ LEVEL = "debug" }}  # added to [defaults] environment; a key here wins
# env_file = "taxisign.env"     # read before this resource's environment table
# restart = "on-failure"        # any [defaults] key overrides the restart policy for this resource
{c}[resources.{key}.settings]    # handed to the plugin as-is
"""


def example_manifest(name: str = "sghost", embedded: bool = False, resource_type: str | None = "taxisign") -> str:
    """Return the documented default manifest: every key with its default as a comment.

    :param name: the ``[host] name``; written as a key when it is not the default.
    :param embedded: write ``embedded = true`` under ``[broker]``.
    :param resource_type: an example resource of this type (named after it); None
        leaves the example resource commented out.
    """
    resource = _EXAMPLE_RESOURCE.format(
        c="" if resource_type else "# ",
        key=key_path(resource_type or "taxisign"),
        name=resource_type or "taxisign",
        type=resource_type or "taxisign",
    )
    return _EXAMPLE.format(
        host_name="" if name == "sghost" else f"name = {show(name)}\n",
        embedded="embedded = true\n" if embedded else "",
        certificate_files=", ".join(CERTIFICATE_FILES),
        resource=resource,
    )
