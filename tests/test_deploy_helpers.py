"""The pure parts of the deploy commands: pinned requirements, host lists, prefix templates, batches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sghost.cli.deployfollow import parse_progress, printable
from sghost.cli.rollout import (
    NOT_STARTED,
    HostResult,
    check_prefix_template,
    expand,
    format_results,
    parse_hosts,
    run_batches,
)
from sghost.deploy import document
from sghost.deploy.pinning import RequirementsError, canonical_name, parse_requirements

DEPLOY_DOC = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"

SHA = "a" * 64
OTHER = "b" * 64


def test_requirements_keep_pins_with_hashes_and_drop_comments() -> None:
    text = (
        "# plugins of the gateway\n"
        "\n"
        f"sghost-canbus==0.2.0 --hash=sha256:{SHA}  # the CAN reader\n"
        f"sghost_taxisign==1.0 \\\n    --hash=sha256:{SHA} \\\n    --hash=sha512:{'c' * 128}\n"
        "    # via -r requirements.in\n"
        f"Extra.Plugin[fast]==2.0.0rc1 --hash=sha256:{OTHER} --hash=sha256:{SHA}\n"
    )
    assert parse_requirements(text, "req.txt") == [
        f"sghost-canbus==0.2.0 --hash=sha256:{SHA}",
        f"sghost_taxisign==1.0 --hash=sha256:{SHA} --hash=sha512:{'c' * 128}",
        f"Extra.Plugin[fast]==2.0.0rc1 --hash=sha256:{OTHER} --hash=sha256:{SHA}",
    ]
    assert parse_requirements("# nothing\n\n", "req.txt") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sghost-canbus==0.2.0\n", "req.txt:1: 'sghost-canbus==0.2.0' has no --hash=sha256:"),
        (f"\n\nsghost-canbus>=0.2 --hash=sha256:{SHA}\n", "req.txt:3: 'sghost-canbus>=0.2' does not pin one version"),
        (f"sghost-canbus==0.2.* --hash=sha256:{SHA}\n", "does not pin one version"),
        (f"--index-url https://example.org/simple\nx==1 --hash=sha256:{SHA}\n",
         "req.txt:1: pip option '--index-url' is not allowed"),
        ("-r other.txt\n", "req.txt:1: pip option '-r' is not allowed"),
        ("x==1 --hash=sha256:abc\n", "req.txt:1: a sha256 digest has 64 hex digits, not 3"),
        (f"x==1 --hash=md5:{SHA}\n", "unknown hash algorithm 'md5'"),
        (f"x==1 --hash=sha512:{'c' * 128}\n", "has no --hash=sha256:"),
        (f"x==1 ; python_version>'3' --hash=sha256:{SHA}\n", "';' is not a hash option"),
        (f"a-b==1 --hash=sha256:{SHA}\nA_B==2 --hash=sha256:{SHA}\n", "req.txt:2: 'A_B' is already pinned on line 1"),
    ],
)
def test_a_bad_requirement_line_is_named_by_file_and_line(text: str, message: str) -> None:
    with pytest.raises(RequirementsError, match=r"^req\.txt:\d+: ") as raised:
        parse_requirements(text, "req.txt")
    assert message in str(raised.value)
    assert "expected" in str(raised.value)


def test_canonical_name() -> None:
    assert canonical_name("Sghost__Can.bus") == "sghost-can-bus"


def test_parse_hosts() -> None:
    assert parse_hosts("gw1, gw2,gw3") == ["gw1", "gw2", "gw3"]
    for bad, message in (("gw1,,gw2", "empty host name"), ("gw1,gw1", "listed twice"), ("gw/1", "'/'")):
        with pytest.raises(ValueError, match=message):
            parse_hosts(bad)


def test_prefix_template() -> None:
    assert check_prefix_template("gateways/{host}/") == "gateways/{host}/"
    assert check_prefix_template("") == ""
    assert expand("gateways/{host}/", "gw7") == "gateways/gw7/"
    assert expand('name = "{host}"\nx = {a = 1}\n', "gw7") == 'name = "gw7"\nx = {a = 1}\n'
    for bad in ("gateways/{host}", "gateways/+/", "gateways/{name}/", "/gateways/{host}/", "#/"):
        with pytest.raises(ValueError, match="expected topic levels ending in '/'"):
            check_prefix_template(bad)


def outcomes(states: dict[str, str]) -> tuple[list[list[str]], object]:
    """A run_batch that answers from ``states`` and records the batches it was given."""
    batches: list[list[str]] = []

    def run_batch(group: list[str]) -> dict[str, HostResult]:
        batches.append(group)
        return {host: HostResult(states[host]) for host in group}

    return batches, run_batch


@pytest.mark.parametrize(
    ("batch", "max_failed", "states", "expected_batches", "not_started"),
    [
        (1, 0, {"a": "rolled-back", "b": "successful", "c": "successful"}, [["a"]], ["b", "c"]),
        (1, 1, {"a": "rolled-back", "b": "failed", "c": "successful"}, [["a"], ["b"]], ["c"]),
        (2, 0, {"a": "successful", "b": "timeout", "c": "successful", "d": "successful"}, [["a", "b"]], ["c", "d"]),
        (2, 1, {"a": "successful", "b": "rejected", "c": "successful"}, [["a", "b"], ["c"]], []),
        (3, 0, {"a": "successful", "b": "successful", "c": "successful"}, [["a", "b", "c"]], []),
    ],
)
def test_batches_stop_once_more_than_max_failed_have_failed(
    batch: int, max_failed: int, states: dict[str, str], expected_batches: list[list[str]], not_started: list[str]
) -> None:
    batches, run_batch = outcomes(states)
    results = run_batches(list(states), batch, max_failed, run_batch)  # type: ignore[arg-type]
    assert batches == expected_batches
    assert list(results) == list(states)
    assert [host for host, result in results.items() if result.state == NOT_STARTED] == not_started


def test_batch_options_are_checked() -> None:
    for batch, max_failed, message in ((0, 0, "--batch 0"), (1, -1, "--max-failed -1")):
        with pytest.raises(ValueError, match=message):
            run_batches(["a"], batch, max_failed, lambda group: {})


def test_format_results() -> None:
    text = format_results({
        "gw1": HostResult("rolled-back", 4, "0123456789ab", 'resource "door": exit code 1'),
        "gw2": HostResult(NOT_STARTED),
    })
    assert text.splitlines() == [
        "HOST  STATE        GENERATION  ID            REASON",
        'gw1   rolled-back  4           0123456789ab  resource "door": exit code 1',
        "gw2   not started  -           -             -",
    ]


def test_progress_documents_are_read_as_data() -> None:
    progress = parse_progress(
        b'{"id": "0123456789ab", "sequence": 5, "state": "rolled-back", "reason": "bad\\u001b[31m\\nthing",'
        b' "generation": 3, "at": "2026-12-04T17:00:00Z"}'
    )
    assert progress is not None
    assert progress.reason == "bad\ufffd[31m thing"
    assert progress.describe() == "rolled-back (generation 3, 2026-12-04T17:00:00Z): bad\ufffd[31m thing"
    for payload in (b"", b"not json", b"[1]", b'{"state": "successful"}', b'{"id": 1, "state": "x"}'):
        assert parse_progress(payload) is None
    assert printable("a\tb\x00c") == "a b\ufffdc"


def doc_example(text: str, marker: str) -> str:
    match = re.search(rf"<!-- example: {marker} -->\n```\w*\n(.*?)\n```", text, re.DOTALL)
    assert match, f"docs/deploy.md has no code block marked <!-- example: {marker} -->"
    return match.group(1)


def test_the_worked_example_in_docs_deploy_md_is_right() -> None:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    fields = {
        "host": "gw1",
        "sequence": 1733320800000,
        "manifest": '[host]\nname = "gw1"\n\n[resources.tür]\ntype = "doorsensor"\n',
        "requirements": ["sghost-doorsensor==0.2.0 --hash=sha256:" + "3f" * 32],
    }
    assert doc_example(text, "canonical-bytes").encode("utf-8") == document.signed_bytes(fields)
    signed = document.sign(fields, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    expected = [f"signature = {signed.signature}", f"id        = {signed.id}"]
    assert doc_example(text, "signature").splitlines() == expected
