"""Each resource its own Unix user: the drop after the fork, its files, and the refusals.

Runs as root (skipped otherwise). Two users are made for the module (``useradd``) and
removed afterwards. A dropped process cannot read this machine's default interpreter
(it lives under /root, mode 0700), so sghost runs from a world-readable copy: a venv of
the system's /usr/bin/python3 under a 0755 temporary directory, holding sghost,
sgframework, their dependencies and the test plugins (the ``installed`` fixture). Without a
world-readable Python >= 3.11 the tests skip, saying which interpreters were tried and why.
"""

from __future__ import annotations

import importlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from test_identity import IdentityBroker, issue, operator_block

from hostharness import ChildProcess, manifest_text, resource_pid, run_cli
from sgframework import constants
from sghost.host.broker import MosquittoBroker
from sghost.testing import Recorder

REPO = Path(__file__).resolve().parent.parent
PLUGINS = "sghost_test_plugins,sghost_privilege_plugin"
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
DEPENDENCIES = ("paho", "pluggy", "psutil")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root (run the tests as root)")


@dataclass(frozen=True)
class Installed:
    """A world-readable sghost: ``python`` runs it; ``root`` is a 0755 directory for the test's files."""

    python: Path
    root: Path

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(SGHOST_PLUGINS=PLUGINS, SGHOST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONUNBUFFERED="1")
        return env

    def run(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(self.python), "-m", "sghost", *args]
        if user is not None:
            command = ["runuser", "-u", user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, env=self.env(), timeout=60, cwd=self.root)


def world_readable_python() -> tuple[str | None, str]:
    """A Python >= 3.11 every user can run, or None and why there is none (the reason a test skips with)."""
    reasons = []
    for candidate in SYSTEM_PYTHONS:
        real = Path(candidate).resolve()
        if not real.exists():
            reasons.append(f"{candidate}: not installed")
            continue
        closed = next((str(path) for path in (real, *real.parents) if not path.stat().st_mode & stat.S_IXOTH), None)
        if closed is not None or not real.stat().st_mode & stat.S_IROTH:
            reasons.append(f"{candidate}: {closed or real} is not open to other users")
            continue
        found = subprocess.run([candidate, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                               capture_output=True, text=True)
        if found.stdout.strip() == "True":
            return candidate, ""
        reasons.append(f"{candidate}: older than 3.11")
    return None, ("no world-readable Python >= 3.11 for the dropped users to run ("
                  + "; ".join(reasons) + "); Debian: apt-get install python3 python3-venv")


def _copy_package(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(source, target / source.name)


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    python, why_not = world_readable_python()
    if python is None:
        pytest.skip(why_not)
    root = Path(tempfile.mkdtemp(prefix="sghost-privilege-"))
    root.chmod(0o755)
    venv = root / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for name in DEPENDENCIES:
        module_file = Path(str(importlib.import_module(name).__file__))
        _copy_package(module_file.parent if module_file.name == "__init__.py" else module_file, site)
    for package in ("sghost", "sgframework"):
        _copy_package(REPO / package, site)
    for plugin in PLUGINS.split(","):
        shutil.copy2(REPO / "tests" / "plugins" / f"{plugin}.py", site)
    yield Installed(venv / "bin" / "python", root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[str, str]]:
    """Two new system users (with their own groups), removed after the module."""
    suffix = uuid.uuid4().hex[:6]
    names = (f"sgt-a-{suffix}", f"sgt-b-{suffix}")
    for name in names:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        name], check=True)
    yield names
    for name in names:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture(scope="module")
def site(installed: Installed, users: tuple[str, str]) -> Path:
    """certs/ with keys owned by each resource's user; the ACL sghost acl prints for the host."""
    root = installed.root / f"site-{uuid.uuid4().hex[:6]}"
    root.mkdir(mode=0o755)
    directory = str(root / "certs")
    issue("init", "--dir", directory)
    issue("issue", "broker", "--server", "--dir", directory)
    for name in ("gwp", "operator"):
        issue("issue", name, "--dir", directory)
    for name, user in zip(("ra", "rb"), users, strict=True):
        issue("issue", name, "--dir", directory, "--owner", user)
    return root


def prober_manifest(broker: MosquittoBroker | None, users: tuple[str, str], site: Path, extra: str = "") -> str:
    reads = [str(site / "certs" / name / constants.KEYFILE) for name in ("ra", "rb")]
    reads += [str(site / "logs" / f"{name}.log") for name in ("ra", "rb")]
    tables = "".join(
        f'[resources.{name}]\ntype = "prober"\nuser = "{user}"\ncertificate_directory = "certs/{name}"\n'
        f"settings = {{ read = {json.dumps(reads)} }}\n{extra}"
        for name, user in zip(("ra", "rb"), users, strict=True)
    )
    return manifest_text(broker, tables, host="gwp", port=None if broker else 8883, host_extra='log_dir = "logs"',
                         broker_extra='certificate_directory = "certs/gwp"')


@pytest.fixture(scope="module")
def broker(site: Path, users: tuple[str, str]) -> Iterator[MosquittoBroker]:
    manifest = site / "acl-source.toml"
    manifest.write_text(prober_manifest(None, users, site))
    acl = run_cli("acl", "-c", str(manifest))
    assert acl.returncode == 0, acl.stderr
    (site / "acl").write_text(acl.stdout + "\n" + operator_block())
    running = IdentityBroker(site)
    running.start()
    yield running
    running.cleanup()


class InstalledHost(ChildProcess):
    """``sghost start`` run by the world-readable interpreter."""

    def __init__(self, manifest: Path, installed: Installed) -> None:
        argv = [str(installed.python), "-m", "sghost", "start", "-c", str(manifest)]
        super().__init__(argv, installed.env(), cwd=installed.root)
        self.manifest = manifest


@pytest.fixture
def operator(broker: MosquittoBroker, site: Path) -> Iterator[Recorder]:
    recorder = Recorder(broker.host, broker.port, "#", client_id=f"operator-{uuid.uuid4().hex[:8]}",
                        certificate_directory=site / "certs" / "operator")
    yield recorder.start()
    recorder.stop()


def test_certs_issue_owner_writes_a_key_only_that_user_can_read(site: Path, users: tuple[str, str]) -> None:
    account = pwd.getpwnam(users[0])
    directory = site / "certs" / "ra"
    for path in (directory, directory / constants.KEYFILE, directory / constants.CERTFILE):
        assert (path.stat().st_uid, path.stat().st_gid) == (account.pw_uid, account.pw_gid), path
    assert stat.S_IMODE((directory / constants.KEYFILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    refused = run_cli("certs", "issue", "rz", "--dir", str(site / "certs"), "--owner", "no-such-user-x")
    assert refused.returncode == 1 and "--owner no-such-user-x: no such user" in refused.stderr
    assert not (site / "certs" / "rz").exists(), "nothing written for a refused owner"


def test_each_resource_runs_as_its_user_and_cannot_read_the_others_files(
    installed: Installed, site: Path, users: tuple[str, str], broker: MosquittoBroker, operator: Recorder
) -> None:
    manifest = site / "privileged.toml"
    manifest.write_text(prober_manifest(broker, users, site))
    host = InstalledHost(manifest, installed).start()
    try:
        identities = {}
        for name in ("ra", "rb"):
            message = operator.wait_for(f"data/{name}/identity", timeout=15)  # connected with its own key
            identities[name] = json.loads(message.payload)
        for (name, identity), user in zip(identities.items(), users, strict=True):
            account = pwd.getpwnam(user)
            assert (identity["uid"], identity["euid"], identity["gid"]) == (account.pw_uid,) * 2 + (account.pw_gid,)
            assert identity["groups"] == [account.pw_gid], "no supplementary group of root's is left"
            assert identity["no_new_privs"] == "1" and identity["back_to_root"] == "PermissionError"
            assert identity["home"] == account.pw_dir
            other = "rb" if name == "ra" else "ra"
            reads = identity["reads"]
            assert reads[str(site / "certs" / name / constants.KEYFILE)] == "ok"
            assert reads[str(site / "certs" / other / constants.KEYFILE)] == "PermissionError", reads
            assert reads[str(site / "logs" / f"{other}.log")] == "PermissionError", reads
        for name, user in zip(("ra", "rb"), users, strict=True):
            log_file = site / "logs" / f"{name}.log"
            assert log_file.stat().st_uid == pwd.getpwnam(user).pw_uid
            assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
        # The supervisor, the zygote and the meta-resource keep root; only resources drop.
        root_processes = [p for p in host.descendants() if p.uids().real == 0]
        assert len(root_processes) >= 2, [(p.pid, p.name(), p.uids()) for p in host.descendants()]
        assert psutil.Process(host.pid).uids().real == 0
    finally:
        host.stop()


def test_check_refuses_a_missing_user_a_non_root_sghost_and_a_key_the_user_cannot_read(
    installed: Installed, site: Path, users: tuple[str, str]
) -> None:
    manifest = site / "check-users.toml"
    manifest.write_text(prober_manifest(None, users, site))
    assert installed.run("check", "-c", str(manifest)).returncode == 0

    missing = site / "check-missing.toml"
    missing.write_text(prober_manifest(None, users, site).replace(f'user = "{users[1]}"', 'user = "no-such-user-x"'))
    result = installed.run("check", "-c", str(missing))
    assert result.returncode == 2
    assert 'resources.rb.user: no user \'no-such-user-x\' on this machine' in result.stderr, result.stderr

    as_user = installed.run("check", "-c", str(manifest), user=users[0])
    assert as_user.returncode == 2, as_user
    assert "resources.ra.user" in as_user.stderr and "needs sghost to run as root" in as_user.stderr

    swapped = site / "check-swapped.toml"  # ra's user is given rb's key: not its own
    swapped.write_text(prober_manifest(None, users, site).replace('certificate_directory = "certs/ra"',
                                                                   'certificate_directory = "certs/rb"'))
    result = installed.run("check", "-c", str(swapped))
    assert result.returncode == 2
    assert "resources.ra.certificate_directory" in result.stderr and f"--owner {users[0]}" in result.stderr

    from_defaults = site / "check-defaults.toml"
    from_defaults.write_text(manifest_text(None, '[resources.rc]\ntype = "prober"\n', host="gwp", port=8883,
                                           defaults='user = "no-such-user-y"'))
    result = installed.run("check", "-c", str(from_defaults))
    assert result.returncode == 2 and "defaults.user: no user 'no-such-user-y'" in result.stderr, result.stderr


def test_start_refuses_a_user_that_does_not_exist(installed: Installed, site: Path, users: tuple[str, str]) -> None:
    manifest = site / "start-missing.toml"
    manifest.write_text(prober_manifest(None, users, site).replace(f'user = "{users[0]}"', 'user = "no-such-user-z"'))
    result = subprocess.run(
        [str(installed.python), "-m", "sghost", "start", "-c", str(manifest)],
        capture_output=True, text=True, env=installed.env(), timeout=60, cwd=installed.root,
    )
    assert result.returncode == 2, result
    assert "resources.ra.user: no user 'no-such-user-z' on this machine" in result.stderr, result.stderr


def test_a_user_removed_while_sghost_runs_is_the_resources_error_at_its_restart(
    installed: Installed, site: Path, broker: MosquittoBroker, operator: Recorder
) -> None:
    name = f"sgt-c-{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", name], check=True)
    try:
        issue("issue", "rc", "--dir", str(site / "certs"), "--owner", name, "--force")
        manifest = site / "vanishing.toml"
        manifest.write_text(manifest_text(
            broker, f'[resources.rc]\ntype = "prober"\nuser = "{name}"\ncertificate_directory = "certs/rc"\n'
            "max_restarts = 1\nbackoff_max = 30.0\n",
            host="gwp", broker_extra='certificate_directory = "certs/gwp"',
        ))
        host = InstalledHost(manifest, installed).start()
        try:
            first = json.loads(operator.wait_for("data/rc/identity", timeout=15).payload)
            assert first["uid"] == pwd.getpwnam(name).pw_uid
            pid = resource_pid(operator, "gwp", "rc")
            subprocess.run(["userdel", "--force", name], check=True)  # it has a process: the resource
            psutil.Process(pid).kill()
            operator.wait_for("data/gwp/rc_state", "fatal", timeout=15)
            error = operator.latest("data/gwp/rc_error") or ""
            assert f"cannot run as user '{name}': no user '{name}' on this machine" == error, error
        finally:
            host.stop()
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
