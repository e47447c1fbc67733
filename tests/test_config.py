"""The manifest layer: every class of problem by its message, defaults, paths, fingerprints."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sghost.config.integrations import HomeAssistantConfig, MetricsConfig
from sghost.config.manifest import (
    BrokerConfig,
    HostConfig,
    ManifestError,
    ResourceConfig,
    RestartPolicy,
    example_manifest,
    load_manifest,
)
from sghost.suggest import close_matches, did_you_mean

TYPES = ("taxisign", "camera")


ALL_TABLES = (
    "[host], [broker], [uplink], [defaults], [resources], [homeassistant], [metrics], [hooks], [deploy], [dashboard]"
)
BAD_HOST = 'broker.host: got 5 (an integer); expected a host name or a non-empty array of "host:port"'

def write(tmp_path: Path, text: str, name: str = "hostconfig.toml") -> Path:
    """Write a manifest into tmp_path and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, **kwargs: Any) -> list[str]:
    """Load a manifest that must fail; return its problems."""
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, **kwargs)
    assert str(caught.value) == "\n".join(caught.value.problems)
    assert caught.value.path == path.absolute()
    return caught.value.problems


def only_problem(path: Path, **kwargs: Any) -> str:
    """Load a manifest that must fail with exactly one problem; return it."""
    problems = problems_of(path, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def make_certificates(directory: Path, skip: str = "") -> Path:
    """Create a certificate directory with dummy files (all but ``skip``)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("ca_public_certificate.pem", "public_certificate.pem", "private_key.pem"):
        if name != skip:
            (directory / name).write_text("dummy\n")
    return directory


# --- valid manifests ---------------------------------------------------------


def test_empty_manifest_gives_all_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = load_manifest(path)
    assert config == HostConfig(path=path.absolute())
    assert config.broker == BrokerConfig()
    assert config.defaults == RestartPolicy()
    assert config.resources == {}
    assert config.warnings == ()


def test_repository_example_loads(tmp_path: Path) -> None:
    text = """
[host]
name = "sghost"

[broker]
embedded = true

[defaults]

[resources.taxisign]
type = "taxisign"
"""
    config = load_manifest(write(tmp_path, text), known_types=["taxisign"])
    assert config.name == "sghost"
    assert config.broker.embedded is True
    assert list(config.resources) == ["taxisign"]
    resource = config.resources["taxisign"]
    assert (resource.type, resource.settings, resource.enabled) == ("taxisign", {}, True)
    assert resource.policy == RestartPolicy()


def test_checked_in_hostconfig_loads() -> None:
    path = Path(__file__).resolve().parent.parent / "hostconfig.toml"
    if not path.exists():
        pytest.skip("no hostconfig.toml in the repository yet")
    load_manifest(path)


def test_all_keys_parsed(tmp_path: Path) -> None:
    make_certificates(tmp_path / "certs")
    password = tmp_path / "secret"
    password.write_text("hunter2\n")
    password.chmod(0o600)
    text = """
[host]
name = "gw1"
health_interval = 2
remote_control = true
log_dir = "logs"
log_max_bytes = 2048
log_backups = 0
runtime_dir = "/run/sghost"

[broker]
host = "broker.example"
port = 8883
certificate_directory = "certs"
username = "gw1"
password_file = "secret"
qos = 2
keepalive = 30
protocol = "MQTTv5"

[resources.cam]
type = "camera"
enabled = false
[resources.cam.settings]
fps = 10
sizes = [1, 2]
"""
    config = load_manifest(write(tmp_path, text), known_types=TYPES)
    assert (config.name, config.health_interval, config.remote_control) == ("gw1", 2.0, True)
    assert isinstance(config.health_interval, float)
    assert (config.log_dir, config.log_max_bytes, config.log_backups) == (tmp_path / "logs", 2048, 0)
    assert config.runtime_dir == Path("/run/sghost")
    broker = config.broker
    assert (broker.host, broker.port, broker.qos, broker.keepalive, broker.protocol) == (
        "broker.example",
        8883,
        2,
        30,
        "MQTTv5",
    )
    assert broker.certificate_directory == tmp_path / "certs"
    assert broker.username == "gw1"
    assert broker.read_password() == "hunter2"
    assert config.resources["cam"].enabled is False
    assert config.resources["cam"].settings == {"fps": 10, "sizes": [1, 2]}


def test_defaults_merge_with_per_resource_overrides(tmp_path: Path) -> None:
    text = """
[defaults]
restart = "on-failure"
backoff_initial = 1
max_restarts = 3

[resources.a]
type = "taxisign"

[resources.b]
type = "taxisign"
restart = "never"
max_restarts = 10
stop_timeout = 0.5
"""
    config = load_manifest(write(tmp_path, text))
    defaults = RestartPolicy(restart="on-failure", backoff_initial=1.0, max_restarts=3)
    assert config.defaults == defaults
    assert config.resources["a"].policy == defaults
    assert config.resources["b"].policy == dataclasses.replace(
        defaults, restart="never", max_restarts=10, stop_timeout=0.5
    )


def test_resources_keep_manifest_order(tmp_path: Path) -> None:
    text = "".join(f'[resources.{name}]\ntype = "taxisign"\n' for name in ("zeta", "alpha", "mid"))
    assert list(load_manifest(write(tmp_path, text)).resources) == ["zeta", "alpha", "mid"]


def test_settings_are_a_copy(tmp_path: Path) -> None:
    text = '[resources.a]\ntype = "t"\n[resources.a.settings]\nnested = { x = [1] }\n'
    resource = load_manifest(write(tmp_path, text)).resources["a"]
    before = resource.fingerprint()
    resource.settings["nested"]["x"].append(2)
    assert resource.table["settings"]["nested"]["x"] == [1]
    assert resource.fingerprint() == before
    assert type(resource.settings) is dict


def test_relative_paths_resolve_against_the_manifest_directory(tmp_path: Path, monkeypatch: Any) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    make_certificates(config_dir / "certs" / "a")
    make_certificates(config_dir / "certs" / "host")
    (config_dir / "pw").write_text("x")
    (config_dir / "pw").chmod(0o600)
    text = """
[host]
log_dir = "logs"
runtime_dir = "../run"
[broker]
certificate_directory = "certs/host"
username = "u"
password_file = "pw"
[resources.a]
type = "t"
certificate_directory = "certs/a"
"""
    write(config_dir, text)
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    config = load_manifest("etc/hostconfig.toml")
    assert config.path == config_dir / "hostconfig.toml"
    assert config.path.is_absolute()
    assert config.log_dir == config_dir / "logs"
    assert config.runtime_dir is not None and config.runtime_dir.resolve() == tmp_path / "run"
    assert config.broker.certificate_directory == config_dir / "certs" / "host"
    assert config.broker.password_file == config_dir / "pw"
    assert config.resources["a"].certificate_directory == config_dir / "certs" / "a"


def test_tls_insecure_is_a_warning(tmp_path: Path) -> None:
    config = load_manifest(write(tmp_path, "[broker]\ntls_insecure = true\n"))
    assert config.broker.tls_insecure is True
    assert config.warnings == (
        f"{tmp_path / 'hostconfig.toml'}: broker.tls_insecure: true: the broker's certificate is not checked "
        "against the host name; use it only for testing",
    )


def test_disabled_resource_skips_environment_checks(tmp_path: Path) -> None:
    text = '[resources.a]\ntype = "not-installed"\nenabled = false\ncertificate_directory = "nowhere"\n'
    calls: list[str] = []
    config = load_manifest(
        write(tmp_path, text), known_types=TYPES, check_settings=lambda *args: calls.append(args[0]) or []
    )
    assert config.resources["a"].enabled is False
    assert calls == []


# --- file-level problems -----------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert only_problem(path) == f"{path}: file not found; create it or pass -c PATH"


def test_missing_file_shows_the_path_as_given(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError) as caught:
        load_manifest("hostconfig.toml")
    assert caught.value.problems == ["hostconfig.toml: file not found; create it or pass -c PATH"]
    assert caught.value.path == tmp_path / "hostconfig.toml"


def test_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[host]\nname = "gw"\nhealth_interval = = 3\n')
    problem = only_problem(path)
    assert problem.startswith(f"{path}: TOML syntax error: ")
    assert "(at line 3, column 19)" in problem


def test_duplicate_resource_is_a_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[resources.a]\ntype = "t"\n[resources.a]\ntype = "t"\n')
    assert "at line 3" in only_problem(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "hostconfig.toml"
    path.write_bytes(b'[host]\nname = "\xff"\n')
    assert "not UTF-8 text" in only_problem(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert only_problem(tmp_path) == f"{tmp_path}: is a directory; expected a TOML file"


# --- key-level problems ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[resources.taxisign]\ntype = "taxisign"\nrestart = "sometimes"\n',
            'resources.taxisign.restart: "sometimes" is not a restart policy; '
            'expected one of "always", "on-failure", "never"',
        ),
        (
            '[resources.taxisign]\ntype = "taxisign"\nrestrat = "always"\n',
            'resources.taxisign.restrat: unknown key; did you mean "restart"?',
        ),
        ("[host]\nnaem = 'x'\n", 'host.naem: unknown key; did you mean "name"?'),
        ("[broker]\nprot = 1\n", 'broker.prot: unknown key; did you mean "port"?'),
        ("[defaults]\nmax_restart = 1\n", 'defaults.max_restart: unknown key; did you mean "max_restarts"?'),
        ("[resource.a]\ntype = 't'\n", 'resource: unknown table; did you mean "resources"?'),
        ("[zzz]\n", "zzz: unknown table; expected one of the tables " + ALL_TABLES),
        ("name = 'x'\n", "name: unknown key; expected one of the tables " + ALL_TABLES),
        (
            '[broker]\nprotocol = "mqttv5"\n',
            'broker.protocol: "mqttv5" is not an MQTT protocol version; '
            'expected one of "MQTTv31", "MQTTv311", "MQTTv5"; did you mean "MQTTv5"?',
        ),
        (
            '[defaults]\nrestart = "alway"\n',
            'defaults.restart: "alway" is not a restart policy; '
            'expected one of "always", "on-failure", "never"; did you mean "always"?',
        ),
    ],
)
def test_values_and_unknown_keys(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert only_problem(path) == f"{path}: {expected}"


def test_unknown_key_without_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, '[resources.a]\ntype = "t"\ncolour_of_sign = "red"\n')
    problem = only_problem(path)
    assert problem.startswith(f"{path}: resources.a.colour_of_sign: unknown key; expected one of: type, enabled, ")
    assert problem.endswith("(plugin settings go under [resources.a.settings])")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[host]\nhealth_interval = 'often'\n", 'host.health_interval: got "often" (a string); expected a number > 0'),
        ("[host]\nhealth_interval = true\n", "host.health_interval: got true (a boolean); expected a number > 0"),
        ("[host]\nremote_control = 1\n", "host.remote_control: got 1 (an integer); expected true or false"),
        ("[host]\nremote_control = 'yes'\n", 'host.remote_control: got "yes" (a string); expected true or false'),
        ("[broker]\nhost = 5\n", BAD_HOST),
        ("[broker]\nhost = ''\n", "broker.host: empty string; expected a non-empty string"),
        ("[broker]\nport = true\n", "broker.port: got true (a boolean); expected an integer from 1 to 65535"),
        ("[broker]\nport = 1883.0\n", "broker.port: got 1883.0 (a float); expected an integer from 1 to 65535"),
        ("[broker]\nport = '1883'\n", 'broker.port: got "1883" (a string); expected an integer from 1 to 65535'),
        ("[broker]\nusername = []\n", "broker.username: got an array; expected a string"),
        ("[broker]\nembedded = 'true'\n", 'broker.embedded: got "true" (a string); expected true or false'),
        ("[defaults]\nmax_restarts = 2.5\n", "defaults.max_restarts: got 2.5 (a float); expected an integer >= 1"),
        (
            "[defaults]\nrestart = 1\n",
            'defaults.restart: got 1 (an integer); expected a string, one of "always", "on-failure", "never"',
        ),
        ("[defaults]\nwatchdog = {a = 1}\n", "defaults.watchdog: got a table; expected a number >= 0"),
        ("[host]\nlog_dir = 3\n", "host.log_dir: got 3 (an integer); expected a string (a path)"),
        ("[host]\nlog_dir = ''\n", "host.log_dir: empty path; expected a path to a file or directory"),
        ("host = 'x'\n", 'host: got "x" (a string); expected a table ([host])'),
        ("resources = 3\n", "resources: got 3 (an integer); expected a table ([resources])"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert only_problem(path) == f"{path}: {expected}"


def test_ints_are_accepted_where_floats_are(tmp_path: Path) -> None:
    config = load_manifest(write(tmp_path, "[defaults]\nbackoff_initial = 1\nbackoff_max = 2\nwatchdog = 3\n"))
    assert config.defaults.backoff_initial == 1.0
    assert isinstance(config.defaults.backoff_initial, float)
    assert isinstance(config.defaults.watchdog, float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[host]\nhealth_interval = 0\n", "host.health_interval: 0 is out of range; expected a number > 0"),
        ("[host]\nlog_max_bytes = 10\n", "host.log_max_bytes: 10 is out of range; expected an integer >= 1024"),
        ("[host]\nlog_backups = 101\n", "host.log_backups: 101 is out of range; expected an integer from 0 to 100"),
        ("[broker]\nport = 0\n", "broker.port: 0 is out of range; expected an integer from 1 to 65535"),
        ("[broker]\nport = 65536\n", "broker.port: 65536 is out of range; expected an integer from 1 to 65535"),
        ("[broker]\nqos = 3\n", "broker.qos: 3 is out of range; expected an integer from 0 to 2"),
        ("[broker]\nkeepalive = 0\n", "broker.keepalive: 0 is out of range; expected an integer from 1 to 65535"),
        ("[defaults]\nbackoff_initial = -1\n", "defaults.backoff_initial: -1 is out of range; expected a number > 0"),
        ("[defaults]\nmax_restarts = 0\n", "defaults.max_restarts: 0 is out of range; expected an integer >= 1"),
        ("[defaults]\nrestart_window = 0.0\n", "defaults.restart_window: 0.0 is out of range; expected a number > 0"),
        ("[defaults]\nstop_timeout = -0.5\n", "defaults.stop_timeout: -0.5 is out of range; expected a number > 0"),
        ("[defaults]\nwatchdog = -1\n", "defaults.watchdog: -1 is out of range; expected a number >= 0"),
        ("[defaults]\nmax_memory_mb = -5\n", "defaults.max_memory_mb: -5 is out of range; expected a number >= 0"),
        (
            "[defaults]\nstop_timeout = inf\n",
            "defaults.stop_timeout: inf is not a finite number; expected a number > 0",
        ),
        ("[defaults]\nwatchdog = nan\n", "defaults.watchdog: nan is not a finite number; expected a number >= 0"),
        (
            "[defaults]\nbackoff_max = 0.1\n",
            "defaults.backoff_max: 0.1 is less than backoff_initial 0.5; expected backoff_max >= backoff_initial",
        ),
        (
            "[defaults]\nbackoff_initial = 60\n",
            "defaults.backoff_initial: 60 is more than backoff_max 30; expected backoff_initial <= backoff_max",
        ),
        (
            '[defaults]\nbackoff_max = 2\n[resources.a]\ntype = "t"\nbackoff_initial = 3\n',
            "resources.a.backoff_initial: 3 is more than backoff_max 2; expected backoff_initial <= backoff_max",
        ),
        (
            '[broker]\nembedded = true\nhost = "10.0.0.1"\n',
            'broker.host: "10.0.0.1" with embedded = true; expected one of "localhost", "127.0.0.1", "::1" '
            "(the embedded broker listens on loopback only)",
        ),
    ],
)
def test_out_of_range(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert only_problem(path) == f"{path}: {expected}"


# --- names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "shown", "bad"),
    [
        ('"a/b"', '"a/b"', "'/'"),
        ('"a+b"', '"a+b"', "'+'"),
        ('"a#b"', '"a#b"', "'#'"),
        ('"a\\u0000b"', '"a\\u0000b"', "'\\x00'"),
        ('"a/#"', '"a/#"', "'/' and '#'"),
    ],
)
def test_invalid_resource_names(tmp_path: Path, key: str, shown: str, bad: str) -> None:
    path = write(tmp_path, f'[resources.{key}]\ntype = "t"\n')
    assert only_problem(path) == (
        f"{path}: resources.{shown}: invalid resource name {shown}: contains {bad}; "
        "expected an MQTT name without '/', '+', '#' or NUL"
    )


def test_empty_resource_name(tmp_path: Path) -> None:
    path = write(tmp_path, '[resources.""]\ntype = "t"\n')
    assert only_problem(path) == f'{path}: resources."": empty resource name; expected a non-empty MQTT name'


def test_invalid_host_name(tmp_path: Path) -> None:
    path = write(tmp_path, '[host]\nname = "gw/1"\n')
    assert only_problem(path) == (
        f"{path}: host.name: invalid name \"gw/1\": contains '/'; expected an MQTT name without '/', '+', '#' or NUL"
    )
    path = write(tmp_path, '[host]\nname = ""\n')
    assert only_problem(path) == f"{path}: host.name: empty name; expected a non-empty MQTT name"


def test_resource_named_like_the_host(tmp_path: Path) -> None:
    path = write(tmp_path, '[host]\nname = "gw"\n[resources.gw]\ntype = "t"\n')
    assert only_problem(path) == (
        f'{path}: resources.gw: same name as [host] name "gw"; expected a different name (they would share topics)'
    )
    path = write(tmp_path, '[resources.sghost]\ntype = "t"\n')  # the default host name
    assert "same name as [host] name" in only_problem(path)


def test_dotted_and_unicode_names_are_quoted_in_key_paths(tmp_path: Path) -> None:
    path = write(tmp_path, '[resources."a.b"]\ntype = "t"\nrestrat = 1\n[resources."ü"]\ntype = "t"\nqos = 1\n')
    assert problems_of(path) == [
        f'{path}: resources."a.b".restrat: unknown key; did you mean "restart"?',
        f'{path}: resources."ü".qos: unknown key; expected one of: type, enabled, settings, certificate_directory, '
        "depends_on, environment, env_file, restart, backoff_initial, backoff_max, max_restarts, restart_window, "
        "stop_timeout, watchdog, max_memory_mb, ready_timeout, restart_with_dependencies, user, group "
        '(plugin settings go under [resources."ü".settings])',
    ]


# --- resources: type, table shape, settings ----------------------------------


def test_missing_type(tmp_path: Path) -> None:
    path = write(tmp_path, "[resources.a]\nrestart = 'never'\n")
    assert only_problem(path) == (
        f'{path}: resources.a: missing key "type"; expected type = "<resource type>" naming an installed plugin'
    )
    assert only_problem(path, known_types=TYPES).endswith("; installed types: camera, taxisign")


def test_unknown_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[resources.a]\ntype = "taxisgn"\n')
    assert only_problem(path, known_types=TYPES) == (
        f'{path}: resources.a.type: unknown resource type "taxisgn"; installed types: camera, taxisign; '
        'did you mean "taxisign"?'
    )
    assert only_problem(path, known_types=[]) == (
        f'{path}: resources.a.type: unknown resource type "taxisgn"; '
        "installed types: none (install a plugin that provides it)"
    )
    load_manifest(path)  # without known_types any type is accepted


def test_resource_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "[resources]\na = 5\n")
    assert only_problem(path) == f"{path}: resources.a: got 5 (an integer); expected a table ([resources.a])"


def test_settings_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[resources.a]\ntype = "t"\nsettings = "fast"\n')
    assert only_problem(path) == (
        f'{path}: resources.a.settings: got "fast" (a string); expected a table ([resources.a.settings])'
    )


def test_check_settings_problems_are_prefixed(tmp_path: Path) -> None:
    path = write(tmp_path, '[resources.a]\ntype = "taxisign"\n[resources.a.settings]\nspeed = "x"\n')
    seen: list[tuple[str, str, Mapping[str, Any]]] = []

    def check(name: str, type_name: str, settings: Mapping[str, Any]) -> list[str]:
        seen.append((name, type_name, dict(settings)))
        return ['speed: got "x"; expected a number', "colour: required"]

    assert problems_of(path, known_types=TYPES, check_settings=check) == [
        f'{path}: resources.a.settings: speed: got "x"; expected a number',
        f"{path}: resources.a.settings: colour: required",
    ]
    assert seen == [("a", "taxisign", {"speed": "x"})]


def test_check_settings_not_called_for_unknown_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[resources.a]\ntype = "nope"\n')
    calls: list[str] = []
    problems_of(path, known_types=TYPES, check_settings=lambda name, *_: calls.append(name) or [])
    assert calls == []


def test_check_settings_that_raises_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, '[resources.a]\ntype = "taxisign"\n')

    def check(name: str, type_name: str, settings: Mapping[str, Any]) -> list[str]:
        raise KeyError("speed")

    problem = only_problem(path, check_settings=check)
    assert problem.startswith(
        f'{path}: resources.a.settings: the settings check of type "taxisign" failed with KeyError'
    )


# --- certificates and passwords ----------------------------------------------


def test_missing_certificate_directory(tmp_path: Path) -> None:
    path = write(tmp_path, '[broker]\ncertificate_directory = "certs"\n')
    assert only_problem(path) == (
        f"{path}: broker.certificate_directory: directory not found: {tmp_path / 'certs'}; "
        "expected a directory holding ca_public_certificate.pem, public_certificate.pem, private_key.pem"
    )


def test_missing_certificate_files_are_named(tmp_path: Path) -> None:
    make_certificates(tmp_path / "certs" / "a", skip="private_key.pem")
    (tmp_path / "certs" / "b").mkdir()
    text = '[resources.a]\ntype = "t"\ncertificate_directory = "certs/a"\n'
    text += '[resources.b]\ntype = "t"\ncertificate_directory = "certs/b"\n'
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 4
    assert f"resources.a.certificate_directory: missing file {tmp_path / 'certs/a/private_key.pem'}; " in problems[0]
    assert all("resources.b.certificate_directory: missing file" in problem for problem in problems[1:])
    assert str(tmp_path / "certs/b/ca_public_certificate.pem") in problems[1]


def test_certificate_directory_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "certs").write_text("")
    path = write(tmp_path, '[broker]\ncertificate_directory = "certs"\n')
    assert f"broker.certificate_directory: {tmp_path / 'certs'} is not a directory; expected" in only_problem(path)


def test_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2\n")
    secret.chmod(0o640)
    path = write(tmp_path, '[broker]\nusername = "u"\npassword_file = "secret"\n')
    problem = only_problem(path)
    assert problem == (
        f"{path}: broker.password_file: {secret} is readable or writable by group or others (mode 0640); "
        f"expected mode 0600: run chmod 600 {secret}"
    )
    assert "hunter2" not in problem
    secret.chmod(0o600)
    assert load_manifest(path).broker.read_password() == "hunter2"


def test_password_file_missing_and_without_username(tmp_path: Path) -> None:
    path = write(tmp_path, '[broker]\npassword_file = "secret"\n')
    assert problems_of(path) == [
        f"{path}: broker.password_file: file not found: {tmp_path / 'secret'}; "
        "expected a file holding the broker password",
        f"{path}: broker.password_file: set without broker.username; expected broker.username as well",
    ]


def test_password_never_in_repr(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2\r\n")
    secret.chmod(0o600)
    config = load_manifest(write(tmp_path, '[broker]\nusername = "u"\npassword_file = "secret"\n'))
    assert config.broker.read_password() == "hunter2"
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.broker)
    assert BrokerConfig().read_password() is None


def test_log_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("")
    path = write(tmp_path, '[host]\nlog_dir = "logs"\n')
    assert only_problem(path) == (
        f"{path}: host.log_dir: {tmp_path / 'logs'} is not a directory; expected a directory (created if missing)"
    )


# --- many problems at once ---------------------------------------------------


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """
[host]
name = "gw/1"
health_interval = -1

[brokr]

[broker]
port = 99999
qos = "1"

[defaults]
restart = "sometimes"

[resources.taxisign]
type = "taxisgn"
restrat = "always"
settings = 1

[resources.other]
max_restarts = true
"""
    path = write(tmp_path, text)
    problems = problems_of(path, known_types=TYPES)
    keys = [re.sub(r"^.*?: (.*?): .*$", r"\1", problem) for problem in problems]
    assert keys == [
        "brokr",
        "host.name",
        "host.health_interval",
        "broker.port",
        "broker.qos",
        "defaults.restart",
        "resources.taxisign.restrat",
        "resources.taxisign.settings",
        "resources.taxisign.type",
        "resources.other.max_restarts",
        "resources.other",
    ]
    assert all(problem.startswith(f"{path}: ") for problem in problems)
    assert all("; " in problem for problem in problems)


# --- fingerprints ------------------------------------------------------------

BASE = """
[defaults]
restart = "always"
[resources.a]
type = "taxisign"
stop_timeout = 2
[resources.a.settings]
speed = 3
[resources.b]
type = "taxisign"
"""


def fingerprints(tmp_path: Path, text: str) -> dict[str, str]:
    """Load a manifest and return each resource's fingerprint."""
    config = load_manifest(write(tmp_path, text))
    return {name: resource.fingerprint() for name, resource in config.resources.items()}


def test_fingerprint_is_stable(tmp_path: Path) -> None:
    first = fingerprints(tmp_path, BASE)
    assert first == fingerprints(tmp_path, BASE)
    reordered = BASE.replace('type = "taxisign"\nstop_timeout = 2', 'stop_timeout = 2\ntype = "taxisign"')
    assert fingerprints(tmp_path, reordered) == first
    assert '"name": "a"' in first["a"], "a canonical text of the table"
    assert first["a"] != first["b"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("speed = 3", "speed = 4"),
        ("speed = 3", "speed = 3\nextra = true"),
        ("stop_timeout = 2", "stop_timeout = 3"),
        ("stop_timeout = 2", "stop_timeout = 2\nenabled = false"),
        ('[resources.a]\ntype = "taxisign"', '[resources.a]\ntype = "camera"'),
    ],
)
def test_fingerprint_changes_with_the_table(tmp_path: Path, old: str, new: str) -> None:
    before = fingerprints(tmp_path, BASE)
    after = fingerprints(tmp_path, BASE.replace(old, new, 1))
    assert after["a"] != before["a"]
    assert after["b"] == before["b"]


def test_fingerprint_ignores_other_tables(tmp_path: Path) -> None:
    before = fingerprints(tmp_path, BASE)
    changed = BASE.replace('restart = "always"', 'restart = "never"') + '[host]\nname = "x"\n'
    assert fingerprints(tmp_path, changed) == before


def test_fingerprint_of_a_directly_built_resource() -> None:
    one = ResourceConfig(name="a", type="t", settings={"x": 1})
    assert one.fingerprint() == ResourceConfig(name="a", type="t", settings={"x": 1}).fingerprint()
    assert one.fingerprint() != ResourceConfig(name="a", type="t", settings={"x": 2}).fingerprint()
    assert one.fingerprint() != ResourceConfig(name="a", type="t", settings={"x": 1}, enabled=False).fingerprint()


# --- example manifest --------------------------------------------------------


def test_example_manifest_loads_and_documents_every_key(tmp_path: Path) -> None:
    text = example_manifest()
    config = load_manifest(write(tmp_path, text), known_types=["taxisign"])
    assert config.name == "sghost"
    assert config.broker == BrokerConfig()
    assert config.defaults == RestartPolicy()
    assert list(config.resources) == ["taxisign"]
    documented: dict[str, str] = {}
    for key, shown in re.findall(r"^# (\w+) = (\S+)", text, flags=re.MULTILINE):
        documented.setdefault(key, shown)  # the first occurrence: resource tables show overrides
    sections: list[tuple[Any, tuple[str, ...]]] = [
        (HostConfig, (
            "path", "broker", "defaults", "resources", "warnings", "uplink", "homeassistant", "metrics", "hooks",
            "deploy", "dashboard",
        )),
        (HomeAssistantConfig, ()),
        (MetricsConfig, ()),
        (BrokerConfig, ()),
        (RestartPolicy, ()),
    ]
    for cls, skip in sections:
        for item in dataclasses.fields(cls):
            if item.name in skip:
                continue
            assert item.name in documented, item.name
            if item.default is not None:
                shown = documented[item.name]
                value = shown.strip('"') if shown.startswith('"') else {"true": True, "false": False}.get(shown)
                expected = value if value is not None else float(shown) if "." in shown else int(shown)
                assert expected == item.default, item.name


def test_example_manifest_variants(tmp_path: Path) -> None:
    config = load_manifest(write(tmp_path, example_manifest(name="gw1", embedded=True, resource_type="x-y")))
    assert (config.name, config.broker.embedded, list(config.resources)) == ("gw1", True, ["x-y"])
    config = load_manifest(write(tmp_path, example_manifest(resource_type=None)))
    assert config.resources == {}


# --- suggestions -------------------------------------------------------------


def test_did_you_mean() -> None:
    assert did_you_mean("restrat", ["restart", "type"]) == 'did you mean "restart"?'
    assert did_you_mean("MQTTV5", ["MQTTv31", "MQTTv5"]) == 'did you mean "MQTTv5"?'
    assert did_you_mean("zzzz", ["restart"]) == ""
    assert close_matches("taxi", ["taxisign", "camera", "taxis"], n=2) == ["taxis", "taxisign"]


def test_password_file_mode_check_uses_the_real_mode(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    os.chmod(secret, 0o604)
    path = write(tmp_path, '[broker]\nusername = "u"\npassword_file = "secret"\n')
    assert "(mode 0604)" in only_problem(path)
