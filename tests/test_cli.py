"""The command line as a user runs it: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

from hostharness import manifest_text, run_cli, sghost_env

REPO = Path(__file__).resolve().parent.parent

BAD = """
[host]
name = "gw/1"
[broker]
port = 70000
[defaults]
restrat = "always"
[resources.sign]
type = "taxisgn"
restart = "sometimes"
"""


def test_check_accepts_the_repository_manifest() -> None:
    result = run_cli("check", "-c", str(REPO / "hostconfig.toml"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_prints_every_problem_with_file_and_key_and_exits_2(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(BAD)
    result = run_cli("check", "-c", str(manifest))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    for key in ("host.name", "broker.port", "defaults.restrat", "resources.sign.type", "resources.sign.restart"):
        assert any(key in line and "hostconfig.toml" in line for line in lines), (key, result.stderr)
    assert 'did you mean "restart"' in result.stderr
    assert 'did you mean "taxisign"' in result.stderr


def test_start_refuses_a_bad_manifest_with_the_same_messages(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(BAD)
    checked = run_cli("check", "-c", str(manifest))
    started = run_cli("start", "-c", str(manifest))
    assert started.returncode == 2
    assert started.stderr.strip() == checked.stderr.strip()


def test_missing_manifest_says_how_to_fix_it(tmp_path: Path) -> None:
    result = run_cli("check", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml: file not found" in result.stderr


def test_toml_syntax_error_shows_line_and_column(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text('[host]\nname = "gw"\nhealth_interval = = 5\n')
    result = run_cli("check", "-c", str(manifest))
    assert result.returncode == 2
    assert "line 3" in result.stderr and "column" in result.stderr


def test_plugins_lists_distribution_and_version() -> None:
    result = run_cli("plugins")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "taxisign" in result.stdout
    assert "sghost-taxisign" in result.stdout


def test_a_broken_plugin_is_listed_with_its_error_and_check_names_it(tmp_path: Path) -> None:
    env = sghost_env("sghost_test_plugins,sghost_broken_plugin")
    listed = run_cli("plugins", env=env)
    assert listed.returncode == 1
    assert "missing dependency: serial" in listed.stdout
    assert "echoer" in listed.stdout, "the other plugins still load"
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(manifest_text(None, '[resources.thing]\ntype = "serialthing"\n', port=1))
    checked = run_cli("check", "-c", str(manifest), env=env)
    assert checked.returncode == 2
    assert "resources.thing.type" in checked.stderr
    assert "missing dependency: serial" in checked.stderr


def test_the_manifest_doc_shows_every_key_as_the_code_knows_it() -> None:
    from sghost.config.manifest import example_manifest

    assert example_manifest().strip() in (REPO / "docs" / "manifest.md").read_text()
