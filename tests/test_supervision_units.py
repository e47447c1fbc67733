"""The pure parts of issue 10: the dependency graph, env files, the log ring, the status column."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sghost.cli.statusview import resource_row
from sghost.config.dependencies import dependency_problems, dependents_of
from sghost.config.environment import EnvFileError, parse_env_text
from sghost.config.manifest import ManifestError, load_manifest
from sghost.host.logring import MAX_FOLLOWER_BACKLOG, MAX_FOLLOWERS, LogBook, LogRing, clean_line
from sghost.plugins import PluginRegistry
from sghost.process.lines import LineSplitter

# ---------------------------------------------------------------- dependencies


def test_a_longer_cycle_is_named_as_a_chain_once() -> None:
    problems = dependency_problems({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]})
    assert problems == {"a": "dependency cycle a -> b -> c -> a; expected dependencies that do not lead back"}


def test_a_usable_graph_has_no_problems() -> None:
    graph = {"app": ["gps", "can"], "gps": ["can"], "can": []}
    assert dependency_problems(graph) == {}
    assert dependents_of(graph, "can") == ["app", "gps"]


def test_depends_on_must_be_an_array_of_names_without_repeats(tmp_path: Path) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        '[resources.a]\ntype = "t"\ndepends_on = "b"\n[resources.b]\ntype = "t"\ndepends_on = ["a", "a"]\n'
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest)
    assert caught.value.problems == [
        f'{manifest}: resources.a.depends_on: got "b" (a string); expected an array of resource names, '
        'e.g. depends_on = ["canbus"]',
        f"{manifest}: resources.b.depends_on: names a resource twice; expected each dependency once",
    ]


# ----------------------------------------------------------------- environment


def test_env_file_syntax() -> None:
    text = (
        "# comment\n; another\n\n  PLAIN = value with spaces  \nSINGLE='no $escapes \\n here'\n"
        'DOUBLE="say \\"hi\\" \\\\ \\$HOME"\nEMPTY=\nLONG=one \\\ntwo\nURL=http://x/?a=b\n'
    )
    assert parse_env_text(text) == {
        "PLAIN": "value with spaces",
        "SINGLE": "no $escapes \\n here",
        "DOUBLE": 'say "hi" \\ $HOME',
        "EMPTY": "",
        "LONG": "one two",
        "URL": "http://x/?a=b",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\nnot an assignment\n", "line 2: no '=' in 'not an assignment'"),
        ("A=1\n\n2BAD=x\n", "line 3: '2BAD' is not a valid variable name"),
        ('A="open\n', 'line 1: unterminated " quote'),
        ("A='open\n", "line 1: unterminated ' quote"),
        ('A="ends escaped\\"\n', 'line 1: unterminated " quote'),
    ],
)
def test_a_bad_env_file_line_is_named(text: str, message: str) -> None:
    with pytest.raises(EnvFileError) as caught:
        parse_env_text(text)
    assert str(caught.value).startswith(message)


def test_resource_keys_win_over_defaults_and_tables_over_files(tmp_path: Path) -> None:
    (tmp_path / "d.env").write_text("FROM=d-file\nD_FILE=1\n")
    (tmp_path / "r.env").write_text("FROM=r-file\nR_FILE=1\n")
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        '[defaults]\nenv_file = "d.env"\nenvironment = { FROM = "d-table", D_TABLE = "1" }\n'
        '[resources.a]\ntype = "t"\nenv_file = "r.env"\n'
        '[resources.b]\ntype = "t"\nenvironment = { FROM = "b-table" }\n'
        '[resources.off]\ntype = "t"\nenabled = false\nenv_file = "missing.env"\n'
    )
    config = load_manifest(manifest)
    assert config.resources["a"].environment == {"FROM": "r-file", "D_FILE": "1", "D_TABLE": "1", "R_FILE": "1"}
    assert config.resources["b"].environment == {"FROM": "b-table", "D_FILE": "1", "D_TABLE": "1"}
    assert "FROM" not in repr(config.resources["b"]), "values stay out of reprs (they may be secrets)"


def test_a_bad_defaults_env_file_is_reported_once_and_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "d.env").write_bytes(b"A=\xff\n")
    manifest = tmp_path / "m.toml"
    manifest.write_text('[defaults]\nenv_file = "d.env"\n[resources.a]\ntype = "t"\n[resources.b]\ntype = "t"\n')
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest)
    assert caught.value.problems == [
        f"{manifest}: defaults.env_file: {tmp_path / 'd.env'} is not UTF-8 text (byte 2); expected a UTF-8 text file"
    ]


def test_a_changed_environment_changes_the_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "r.env").write_text("A=1\n")
    manifest = tmp_path / "m.toml"
    manifest.write_text('[resources.a]\ntype = "t"\nenv_file = "r.env"\n')
    before = load_manifest(manifest).resources["a"].fingerprint()
    (tmp_path / "r.env").write_text("A=2\n")
    assert load_manifest(manifest).resources["a"].fingerprint() != before


# --------------------------------------------------------------------- plugins


def test_register_refuses_an_unknown_ready_mode() -> None:
    class Plugin:
        @staticmethod
        def register_resource_types(register):  # type: ignore[no-untyped-def]
            register("t", lambda context: None, ready="whenever")

    import sghost

    Plugin.register_resource_types = sghost.hookimpl(Plugin.register_resource_types)  # type: ignore[method-assign]
    info = PluginRegistry().register(Plugin, "bad-ready")
    assert info.error == (
        "ValueError: ready of resource type \"t\": 'whenever' is not a ready mode; expected one of connected, signal"
    )


# --------------------------------------------------------------------- log ring


def test_the_ring_is_bounded_in_lines_and_bytes() -> None:
    ring = LogRing(max_lines=3, max_bytes=10_000)
    book = LogBook()
    for number in range(5):
        ring.append(book.add("r", "stdout", f"line {number}"))
    assert [line.text for line in ring.last(10)] == ["line 2", "line 3", "line 4"]
    small = LogRing(max_lines=100, max_bytes=2000)
    for number in range(20):
        small.append(book.add("r", "stderr", f"{number:02d}" + "y" * 50))
    assert 1 < len(small.lines) < 20 and small.size <= 2000
    assert small.last_stderr is not None and small.last_stderr.startswith("19")


def test_long_lines_are_cut_with_a_marker_and_control_characters_escaped() -> None:
    assert clean_line("a\x00b\x1b[1m\tc\x7f") == "a\\x00b\\x1b[1m\tc\\x7f"
    assert clean_line("z" * 5000).endswith("z [... 904 more characters cut]")


def test_a_line_longer_than_the_pipe_bound_is_one_cut_line_and_the_next_lines_are_intact() -> None:
    splitter = LineSplitter(max_line=10)
    lines = splitter.feed(b"short\n" + b"\xc3\xa9" * 8)  # 16 characters, 32 bytes
    lines += splitter.feed("é".encode() * 100 + b"\nnext\r\nlast")
    lines += splitter.flush()
    assert lines == ["short", "ééééé [... 103 more characters cut]", "next", "last"]
    assert clean_line(lines[1]) == lines[1], "a line cut by the pipe keeps its count"
    assert clean_line("q" * 5000 + " [... 100 more characters cut]").endswith("q [... 1004 more characters cut]")
    assert splitter.feed(b"x" * 25) == [] and splitter.flush() == ["x" * 10 + " [... 15 more characters cut]"]


def test_tail_interleaves_every_resource_in_arrival_order() -> None:
    book = LogBook()
    for name, text in (("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")):
        book.add(name, "stdout", text)
    assert [(line.resource, line.text) for line in book.tail(None, 3)] == [("b", "2"), ("a", "3"), ("c", "4")]
    assert book.tail("nosuch", 5) == []
    assert book.tail("a", 0) == []


def test_followers_get_new_lines_and_a_stalled_or_gone_one_is_dropped() -> None:
    book = LogBook()
    reader, writer = socket.socketpair()
    stalled_reader, stalled_writer = socket.socketpair()
    with reader, stalled_reader:
        assert book.follow(writer, "a")
        assert book.follow(stalled_writer, None)
        book.add("b", "stdout", "not for the first")
        book.add("a", "stdout", "hello")
        assert reader.recv(4096).decode().count("\n") == 1
        big = "q" * 4000
        for _ in range(MAX_FOLLOWER_BACKLOG // 4000 + 200):
            book.add("b", "stdout", big)  # nobody reads stalled_reader
        assert len(book._followers) == 1, "the stalled reader was disconnected"
    book.add("a", "stdout", "after the reader left")
    assert book._followers == [], "a reader that is gone is dropped at the next line"


def test_the_number_of_followers_is_bounded() -> None:
    book = LogBook()
    pairs = [socket.socketpair() for _ in range(MAX_FOLLOWERS + 1)]
    try:
        results = [book.follow(writer, None) for _reader, writer in pairs]
        assert results == [True] * MAX_FOLLOWERS + [False]
    finally:
        book.close()
        for reader, writer in pairs:
            reader.close()
            writer.close()


# --------------------------------------------------------------------- status


def test_status_column_shows_what_a_resource_waits_for_and_a_failed_ones_last_stderr() -> None:
    waiting = resource_row("app", {"state": "waiting", "waiting_for": ["can", "gps"], "error": "none"})
    assert waiting[-1] == "waiting for can, gps"
    failed = resource_row("app", {"state": "backoff", "error": "exit code 1", "last_stderr": "  bad  thing "})
    assert failed[-1] == "exit code 1 | last stderr: bad thing"
    running = resource_row("app", {"state": "running", "error": "exit code 1", "last_stderr": "old"})
    assert running[-1] == "exit code 1"


def test_logs_refuses_a_negative_count_and_a_reader_too_many(capsys: pytest.CaptureFixture[str]) -> None:
    from sghost.cli.main import main
    from sghost.host.control import make_handler

    with pytest.raises(SystemExit) as caught:
        main(["logs", "-n", "-1"])
    assert caught.value.code == 2
    assert "expected 0 or more lines, not -1" in capsys.readouterr().err

    from sghost.config.manifest import HostConfig
    from sghost.host.supervisor import Supervisor

    host = Supervisor(HostConfig(path=Path("hostconfig.toml")), PluginRegistry())  # not run: no processes
    handle = make_handler(host)
    pairs = [socket.socketpair() for _ in range(MAX_FOLLOWERS)]
    try:
        for _reader, writer in pairs:
            assert host.logbook.follow(writer, None)
        answer = handle({"op": "logs", "resource": None, "lines": 5, "follow": True})
        assert answer["ok"] is False
        assert "16 readers already follow the logs of this host" in answer["message"]
        assert handle({"op": "logs", "lines": -3})["message"].startswith('logs: expected "lines"')
    finally:
        host.logbook.close()
        for reader, writer in pairs:
            reader.close()
            writer.close()
