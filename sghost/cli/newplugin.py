"""``sghost new-plugin NAME [DIR]``: write a complete plugin distribution to start from.

The distribution ``sghost-<name>`` holds a pyproject with the entry point, the
module ``sghost_<name>`` offering resource type ``<name>``, a README, and a test
that uses sghost's pytest fixtures. It passes ``pytest`` as written once it is
installed (``pip install -e DIR``).
"""

from __future__ import annotations

import argparse
import keyword
import re
import sys
from pathlib import Path
from string import Template
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2

_NAME = re.compile(r"[a-z][a-z0-9_]*")

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "The sghost resource type $name"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["sghost"]

[project.optional-dependencies]
test = ["pytest>=8"]

# sghost finds the plugin through this entry point: "<name> = <module>".
[project.entry-points.sghost]
$name = "$module"

[tool.setuptools]
packages = ["$module"]

[tool.ruff]
line-length = 120
target-version = "py311"

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "SIM", "RUF"]

[tool.ruff.lint.isort]
known-first-party = ["$module"]
'''

MODULE = '''\
"""Resource type ``$name``: counts up every ``interval`` seconds; command ``reset`` sets the count back to 0.

Made by ``sghost new-plugin``: replace the counter with what your resource does.
See sghost's docs/plugins.md for everything ``setup`` and ``context`` offer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sghost

if TYPE_CHECKING:  # keep the entry-point module light: import heavy libraries inside setup
    from sghost.context import ResourceContext
    from sghost.plugins import Register

DEFAULT_INTERVAL = 10.0
SETTINGS = ("interval",)


def check_settings(settings: Mapping[str, Any]) -> list[str]:
    """The problems of a resource's settings, one line each naming its key (``sghost check`` shows them)."""
    problems = [f"{key}: unknown key; expected one of {', '.join(SETTINGS)}" for key in settings if key not in SETTINGS]
    interval = settings.get("interval", DEFAULT_INTERVAL)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        problems.append(f"interval: expected a number of seconds > 0, not {interval!r}")
    return problems


def setup(context: ResourceContext) -> None:
    """Send the count on ``data/<name>/count`` every ``interval`` s; ``command/<name>/reset`` sets it to 0."""
    state = {"count": 0}

    def tick() -> None:
        state["count"] += 1
        context.resource.send_data("count", state["count"])

    def on_reset(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        context.logger.info("Count reset at %d (%s)", state["count"], payload)
        state["count"] = 0
        context.resource.send_data("count", 0)

    context.resource.register_outgoing_data("count", defaultvalue=0, send_data_as_retained=True)
    context.resource.register_incoming_command("reset", on_reset)
    context.every(float(context.settings.get("interval", DEFAULT_INTERVAL)), tick)


@sghost.hookimpl
def register_resource_types(register: Register) -> None:
    """Offer the resource type ``$name``."""
    register("$name", setup, check_settings=check_settings, description="counts up; command reset")
'''

TEST = '''\
"""The $name resource against a real broker, with sghost's pytest fixtures ``mosquitto`` and ``mqtt_recorder``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sgframework import Resource
from sghost.context import ResourceContext
from sghost.plugins import PluginRegistry
from sghost.testing import MosquittoBroker, Recorder

import $module


@pytest.fixture
def running(mosquitto: MosquittoBroker) -> Iterator[ResourceContext]:
    """A started $name resource counting every 0.05 s, set up as sghost would set it up."""
    resource = Resource("$name", mosquitto.host, mosquitto.port)
    context = ResourceContext("$name", {"interval": 0.05}, resource)
    $module.setup(context)
    resource.start(use_threaded_networking=True)
    yield context
    context.run_cleanups()
    resource.stop()


def test_counts_and_resets(
    running: ResourceContext, mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    recorder = mqtt_recorder(mosquitto)
    recorder.wait_for("commandavailable/$name/reset", "True")

    def counted_to(count: int) -> bool:
        running.run_due_timers()  # sghost's resource loop does this
        return any(message.payload == str(count) for message in recorder.on("data/$name/count"))

    assert recorder.wait_until(lambda: counted_to(3), 5), recorder.on("data/$name/count")
    last_count = recorder.on("data/$name/count")[-1].at
    recorder.publish("command/$name/reset", "now")
    recorder.wait_for("data/$name/reset", "now")  # the command's echo
    recorder.wait_for("data/$name/count", "0", after=last_count)


def test_check_settings_names_the_key() -> None:
    assert $module.check_settings({}) == []
    assert $module.check_settings({"interval": "soon", "colour": 1}) == [
        "colour: unknown key; expected one of interval",
        "interval: expected a number of seconds > 0, not 'soon'",
    ]


def test_entry_point_is_discovered() -> None:
    """Needs ``pip install -e .`` in this directory."""
    registry = PluginRegistry()
    registry.load(autoload=True)
    assert registry.get("$name").setup is $module.setup
    (info,) = [info for info in registry.plugins if info.name == "$name"]
    assert info.error is None and info.distribution == "$distribution"
'''

README = '''\
# $distribution

An [sghost](https://pypi.org/project/sghost/) resource plugin offering resource type **`$name`**
(made by `sghost new-plugin`; it counts up until you make it do something useful).

| topic | direction | payload |
| --- | --- | --- |
| `data/<name>/count` | out, retained | the count, every `interval` seconds; `0` at start |
| `command/<name>/reset` | in | anything: the count goes back to `0` |

## Install, try and run

```sh
pip install -e .                         # then: sghost plugins   (lists "$name")
sghost run $name --set interval=1 --broker localhost:1883   # in the foreground, Ctrl-C stops it
```

In `hostconfig.toml`:

```toml
[resources.$name]
type = "$name"
[resources.$name.settings]
interval = 10.0
```

`sghost check` reports bad settings through `check_settings`.

## Tests

```sh
pytest tests
```

They use the `mosquitto` and `mqtt_recorder` fixtures that sghost installs as a pytest plugin,
so they need `mosquitto` on PATH and this distribution installed (`pip install -e .`).
'''


class NewPluginError(Exception):
    """A NAME or DIR that cannot be used; ``str()`` says why."""


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a plugin's name (``None`` when it can)."""
    if not _NAME.fullmatch(name):
        return (
            f"NAME {name!r} is not a valid plugin name: expected a lower-case Python identifier "
            "(a-z, then a-z, 0-9 or _), e.g. thermometer or door_sensor"
        )
    if keyword.iskeyword(name):
        return f"NAME {name!r} is a Python keyword; choose another name"
    return None


def plugin_files(name: str) -> dict[str, str]:
    """Relative path -> text of every file of the distribution for plugin ``name``."""
    module = f"sghost_{name}"
    values = {"name": name, "module": module, "distribution": f"sghost-{name.replace('_', '-')}"}
    return {
        "pyproject.toml": Template(PYPROJECT).substitute(values),
        "README.md": Template(README).substitute(values),
        f"{module}/__init__.py": Template(MODULE).substitute(values),
        f"tests/test_{name}.py": Template(TEST).substitute(values),
    }


def write_plugin(name: str, directory: Path | None = None) -> tuple[Path, list[Path]]:
    """Write the distribution into ``directory`` (default ``./sghost-<name>``); return it and the files written."""
    problem = name_problem(name)
    if problem:
        raise NewPluginError(problem)
    target = directory if directory is not None else Path(f"sghost-{name.replace('_', '-')}")
    if target.exists() and not target.is_dir():
        raise NewPluginError(f"DIR {str(target)!r} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise NewPluginError(f"DIR {str(target)!r} exists and is not empty; give a new or empty directory")
    written = []
    for relative, text in plugin_files(name).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return target, written


def add_new_plugin_parser(subparsers: Any) -> None:
    """Add ``new-plugin NAME [DIR]`` to the ``sghost`` command line."""
    parser = subparsers.add_parser(
        "new-plugin",
        help="write a complete plugin distribution (pyproject, module, README, test) to start from",
        description="Write the distribution sghost-NAME into DIR (default ./sghost-NAME): a pyproject with the "
        "entry point, the module sghost_NAME offering resource type NAME, a README and a test using "
        "sghost's pytest fixtures. Then: pip install -e DIR; pytest DIR/tests; sghost plugins.",
    )
    parser.add_argument("name", metavar="NAME", help="the plugin's and its resource type's name, e.g. thermometer")
    parser.add_argument("directory", metavar="DIR", nargs="?", type=Path,
                        help="a new or empty directory (default: ./sghost-NAME)")
    parser.set_defaults(handler=run_new_plugin)


def run_new_plugin(args: argparse.Namespace) -> int:
    try:
        target, written = write_plugin(args.name, args.directory)
    except NewPluginError as error:
        print(f"sghost new-plugin: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"sghost new-plugin: cannot write {error.filename or args.directory}: {error.strerror}",
              file=sys.stderr)
        return EXIT_USAGE
    for path in written:
        print(f"wrote {path}")
    print(f"next: pip install -e {target} && pytest {target / 'tests'} && sghost plugins")
    return EXIT_OK
