"""``sghost new-plugin``: the distribution it writes installs, passes its own tests and is listed; bad input exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from hostharness import run_cli


def plain_env() -> dict[str, str]:
    """The environment of a user's shell: no test plugins, autoload on."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SGHOST_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def throwaway_venv(directory: Path) -> Path:
    """A venv that sees everything installed in ours (sghost, pip, pytest) and installs into itself only."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True, timeout=60)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = directory / "lib" / version / "site-packages"
    ours = sysconfig.get_paths()["purelib"]
    # addsitedir, not a plain path line: our own .pth files (the editable sghost) must be read too.
    (site_packages / "_sghost_test_parent.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return directory / "bin" / "python"


def run(python: Path, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], capture_output=True, text=True, env=plain_env(), cwd=cwd,
                          timeout=timeout)


def test_the_written_plugin_installs_passes_its_tests_and_is_listed(tmp_path: Path) -> None:
    target = tmp_path / "door"
    made = run_cli("new-plugin", "door_sensor", str(target), env=plain_env())
    assert made.returncode == 0, made.stderr
    assert {path.relative_to(target).as_posix() for path in target.rglob("*") if path.is_file()} == {
        "pyproject.toml", "README.md", "sghost_door_sensor/__init__.py", "tests/test_door_sensor.py"}
    assert f"wrote {target / 'pyproject.toml'}" in made.stdout

    python = throwaway_venv(tmp_path / "venv")
    installed = run(python, "-m", "pip", "install", "--no-deps", "-e", str(target))
    assert installed.returncode == 0, installed.stdout + installed.stderr

    tested = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=target)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout

    listed = run(python, "-m", "sghost", "plugins")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith("door_sensor ")]
    assert "entry point sghost: sghost_door_sensor" in line and "sghost-door-sensor 0.1.0" in line
    assert line.endswith(" ok")

    linted = run(Path(sys.executable), "-m", "ruff", "check", ".", cwd=target)
    assert linted.returncode == 0, linted.stdout


def test_our_own_venv_is_untouched_by_it() -> None:
    listed = run_cli("plugins", env=plain_env())
    assert "door_sensor" not in listed.stdout


@pytest.mark.parametrize(("name", "why"), [
    ("Door", "is not a valid plugin name: expected a lower-case Python identifier"),
    ("2fa", "is not a valid plugin name"),
    ("door-sensor", "is not a valid plugin name"),
    ("", "is not a valid plugin name"),
    ("class", "is a Python keyword"),
])
def test_a_bad_name_exits_2(tmp_path: Path, name: str, why: str) -> None:
    result = run_cli("new-plugin", name, str(tmp_path / "out"), env=plain_env())
    assert result.returncode == 2
    assert f"sghost new-plugin: NAME {name!r} {why}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_non_empty_directory_or_a_file_exits_2_and_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = run_cli("new-plugin", "door", str(tmp_path / "taken"), env=plain_env())
    assert result.returncode == 2
    assert f"DIR {str(tmp_path / 'taken')!r} exists and is not empty" in result.stderr
    assert [path.name for path in (tmp_path / "taken").iterdir()] == ["notes.txt"]

    (tmp_path / "file").write_text("")
    result = run_cli("new-plugin", "door", str(tmp_path / "file"), env=plain_env())
    assert result.returncode == 2 and "exists and is not a directory" in result.stderr


def test_an_empty_directory_is_used_and_the_default_is_named_after_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert run_cli("new-plugin", "door", str(tmp_path / "empty"), env=plain_env()).returncode == 0
    assert (tmp_path / "empty" / "sghost_door" / "__init__.py").is_file()
    result = subprocess.run([sys.executable, "-m", "sghost", "new-plugin", "window_contact"], cwd=tmp_path,
                            capture_output=True, text=True, env=plain_env(), timeout=30)
    assert result.returncode == 0, result.stderr
    assert 'name = "sghost-window-contact"' in (tmp_path / "sghost-window-contact" / "pyproject.toml").read_text()
