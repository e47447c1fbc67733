"""Discovery of resource plugins: which resource types are installed, and why one is not.

Plugins are found through entry points in group ``sghost`` (and the modules
named in ``SGHOST_PLUGINS``), imported **one at a time**, and asked through
the hook ``register_resource_types(register)`` for the resource types they
offer. Whatever goes wrong with one plugin — it fails to import, its hook
raises, it calls ``register`` wrongly, it takes a type name another plugin
already has, it misspells a hook — becomes :attr:`PluginInfo.error` (a
one-line ``"<ExceptionType>: <message>"``) and a line in the log of logger
``sghost.plugins``; every other plugin keeps working. A plugin that fails
offers none of its types, so it is never half-loaded.

This module is imported by ``sghost plugins`` and ``sghost check``: it keeps
its own imports light (no paho, no sgframework).
"""

from __future__ import annotations

import importlib
import logging
import os
import traceback as traceback_module
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from sghost import entrypoints, hookspecs
from sghost.suggest import did_you_mean

if TYPE_CHECKING:
    from sghost.context import ResourceContext

__all__ = [
    "AUTOLOAD_DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "EXTRA_PLUGINS_ENV",
    "PluginInfo",
    "PluginRegistry",
    "Register",
    "ResourceType",
    "UnknownResourceType",
    "format_plugins",
    "settings_directory",
]

AUTOLOAD_DISABLE_ENV = "SGHOST_DISABLE_PLUGIN_AUTOLOAD"
"""Set to ``1`` to skip the entry points (tests); ``SGHOST_PLUGINS`` still applies."""

EXTRA_PLUGINS_ENV = "SGHOST_PLUGINS"
"""Comma-separated importable module names registered as plugins too (like ``pytest -p``)."""

ENTRY_POINT_GROUP = "sghost"
"""The entry point group in which distributions declare their plugin module."""

READY_MODES = ("connected", "signal")
"""The values of ``register(..., ready=...)``."""

NO_TYPES_HINT = "no @sghost.hookimpl register_resource_types calling register?"

SOURCE_EXTRA = EXTRA_PLUGINS_ENV
SOURCE_REGISTERED = "registered"

_FORBIDDEN_NAME_CHARACTERS = ("/", "+", "#", "\0")
_FALSE_WORDS = ("", "0", "false", "no", "off")

logger = logging.getLogger("sghost.plugins")

Setup = Callable[["ResourceContext"], None]
"""``setup(context)``: sets up one resource in its own process."""

CheckSettings = Callable[[Mapping[str, Any]], list[str]]
"""``check_settings(settings)``: returns the problems of a resource's settings, ``[]`` when fine."""


_SETTINGS_DIRECTORY: ContextVar[Path | None] = ContextVar("sghost_settings_directory", default=None)


def settings_directory() -> Path:
    """The directory that relative paths in a resource's settings are relative to.

    While sghost runs a type's ``check_settings``, this is the directory of the manifest
    being checked; elsewhere it is the current directory. In ``setup``, use
    ``context.base_directory`` (or ``context.path(...)``) instead.
    """
    directory = _SETTINGS_DIRECTORY.get()
    return directory if directory is not None else Path.cwd()


@contextmanager
def settings_directory_set(directory: Path) -> Iterator[None]:
    """Make :func:`settings_directory` return ``directory`` inside the ``with`` block (the manifest reader)."""
    token = _SETTINGS_DIRECTORY.set(directory)
    try:
        yield
    finally:
        _SETTINGS_DIRECTORY.reset(token)


class Register(Protocol):
    """The ``register`` callback handed to the hook ``register_resource_types``.

    Annotate a hook implementation's argument with it (under ``TYPE_CHECKING``)
    to have a type checker verify the calls.
    """

    def __call__(
        self,
        type_name: str,
        setup: Setup,
        *,
        check_settings: CheckSettings | None = None,
        description: str = "",
        ready: str = "connected",
    ) -> None:
        """Offer resource type ``type_name``, set up by ``setup(context)`` in the resource's process.

        ``ready``: when a resource of this type counts as ready (resources that
        ``depends_on`` it start then): ``"connected"`` (running, connected and
        announced) or ``"signal"`` (besides, the plugin has called
        ``context.ready()``; until then its state stays ``starting``).
        """


@dataclass(frozen=True)
class ResourceType:
    """A resource type offered by a plugin: what ``type = "..."`` in the manifest refers to."""

    name: str
    setup: Setup
    plugin: str
    """Name of the plugin that registered the type."""
    check_settings: CheckSettings | None = None
    description: str = ""
    ready: str = "connected"
    """``connected``, or ``signal``: ready once the plugin called ``context.ready()``."""


@dataclass
class PluginInfo:
    """One plugin as ``sghost plugins`` shows it, loaded or not."""

    name: str
    """The entry point's name, or the module name for ``SGHOST_PLUGINS``."""
    source: str
    """``entry point sghost: <value>``, ``SGHOST_PLUGINS`` or ``registered``."""
    distribution: str | None = None
    version: str | None = None
    types: list[str] = field(default_factory=list)
    error: str | None = None
    """Why the plugin is unusable, one line: ``"<ExceptionType>: <message>"``; ``None`` when loaded."""
    traceback: str | None = field(default=None, repr=False)
    """The full traceback behind :attr:`error`, for the log and for plugin authors."""

    @property
    def ok(self) -> bool:
        """Whether the plugin loaded and its types are available."""
        return self.error is None


class UnknownResourceType(KeyError):
    """No loaded plugin offers the requested resource type; ``str()`` says why."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown resource type"


def one_line_error(error: BaseException) -> str:
    """``"<ExceptionType>: <message>"`` on one line, as :attr:`PluginInfo.error` holds it."""
    message = " ".join(str(error).split())
    name = type(error).__name__
    return f"{name}: {message}" if message else name


def autoload_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``SGHOST_DISABLE_PLUGIN_AUTOLOAD`` asks to skip the entry points."""
    value = (os.environ if environ is None else environ).get(AUTOLOAD_DISABLE_ENV, "")
    return value.strip().lower() not in _FALSE_WORDS


def extra_plugin_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The module names listed in ``SGHOST_PLUGINS``, in order, without blanks or repeats."""
    value = (os.environ if environ is None else environ).get(EXTRA_PLUGINS_ENV, "")
    names: list[str] = []
    for raw in value.split(","):
        name = raw.strip()
        if name and name not in names:
            names.append(name)
    return names


def _type_name_problem(type_name: object) -> str | None:
    if not isinstance(type_name, str):
        return f"the resource type name must be a string, not {type(type_name).__name__}: {type_name!r}"
    if not type_name:
        return "the resource type name must not be empty"
    bad = [char for char in _FORBIDDEN_NAME_CHARACTERS if char in type_name]
    if bad:
        shown = ", ".join(repr(char) for char in bad)
        return f"the resource type name {type_name!r} contains {shown}; names must not contain '/', '+', '#' or NUL"
    return None


class PluginRegistry:
    """The installed resource plugins and the resource types they offer.

    Typical use (the supervisor, ``sghost check``, ``sghost plugins``)::

        registry = PluginRegistry()
        registry.load()                      # entry points + SGHOST_PLUGINS, never raises
        kind = registry.get("taxisign")      # or registry.missing_type_reason("taxisign")
        kind.setup(context)

    Tests skip the entry points and register plugin objects directly::

        registry = PluginRegistry()
        registry.register(my_plugin_module, "my-plugin")
    """

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._types: dict[str, ResourceType] = {}
        self._plugins: list[PluginInfo] = []
        self._loaded = False
        self._autoload: bool | None = None

    # ---------------------------------------------------------------- reading

    @property
    def types(self) -> dict[str, ResourceType]:
        """Every available resource type by name (a copy)."""
        return dict(self._types)

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin tried, loaded or failed, in load order (a copy of the list)."""
        return list(self._plugins)

    @property
    def failed(self) -> list[PluginInfo]:
        """The plugins that failed to load."""
        return [info for info in self._plugins if info.error is not None]

    @property
    def autoload(self) -> bool | None:
        """Whether :meth:`load` loaded the entry points; ``None`` before it ran."""
        return self._autoload

    def get(self, type_name: str) -> ResourceType:
        """The resource type ``type_name``; raises :class:`UnknownResourceType` (a ``KeyError``) saying why not."""
        try:
            return self._types[type_name]
        except KeyError:
            raise UnknownResourceType(self.missing_type_reason(type_name)) from None

    def missing_type_reason(self, type_name: str) -> str:
        """One line saying why ``type_name`` is unavailable (``""`` when it is available).

        ``no installed plugin offers resource type "x"; installed types: a, b``, then
        the failed plugin named like the type (else every failed plugin) with its error,
        a did-you-mean, and a note when autoload is off.
        """
        if type_name in self._types:
            return ""
        installed = ", ".join(sorted(self._types)) or "none"
        parts = [f'no installed plugin offers resource type "{type_name}"; installed types: {installed}']
        failed = self.failed
        named = [info for info in failed if info.name == type_name]
        for info in named or failed:
            parts.append(f'plugin "{info.name}" failed to load: {info.error}')
        suggestion = did_you_mean(type_name, self._types)
        if suggestion:
            parts.append(suggestion)
        if self._autoload is False:
            parts.append(f"plugin autoload is off ({AUTOLOAD_DISABLE_ENV} is set)")
        return "; ".join(parts)

    def check_settings(self, resource_name: str, type_name: str, settings: Mapping[str, Any]) -> list[str]:
        """The problems the type's ``check_settings`` finds in resource ``resource_name``'s settings.

        Problems are returned as the plugin words them, one line each, without a key
        path: the manifest reader files them under ``resources.<name>.settings``.
        An unknown type gives its :meth:`missing_type_reason`; a ``check_settings``
        that raises or returns something other than a list of strings gives one problem.
        """
        if type_name not in self._types:
            return [self.missing_type_reason(type_name)]
        kind = self._types[type_name]
        if kind.check_settings is None:
            return []
        try:
            problems = kind.check_settings(settings)
        except Exception as error:
            logger.debug("check_settings of type %r raised for resource %r", type_name, resource_name, exc_info=True)
            return [f'the settings check of resource type "{type_name}" failed: {one_line_error(error)}']
        if problems is None:
            return []
        if isinstance(problems, str | bytes) or not isinstance(problems, Iterable):
            return [
                f'the settings check of resource type "{type_name}" returned {type(problems).__name__}, '
                "not a list of strings"
            ]
        return [" ".join(str(problem).split()) for problem in problems]

    # ---------------------------------------------------------------- loading

    def load(self, autoload: bool | None = None) -> None:
        """Load the entry points of group ``sghost`` (unless autoload is off), then ``SGHOST_PLUGINS``.

        ``autoload=None`` reads ``SGHOST_DISABLE_PLUGIN_AUTOLOAD``. Never raises for
        a plugin's fault: each failure is recorded in :attr:`plugins` and logged.
        A second call does nothing.
        """
        if self._loaded:
            return
        self._loaded = True
        self._autoload = not autoload_disabled() if autoload is None else autoload
        if self._autoload:
            for entry_point in self._entry_points():
                self._load_entry_point(entry_point)
        else:
            logger.debug("Plugin autoload is off: entry points of group %r skipped", ENTRY_POINT_GROUP)
        for module_name in extra_plugin_names():
            self._load_module(module_name)

    def register(self, plugin: object, name: str) -> PluginInfo:
        """Register a plugin object or module directly (tests), and ask it for its types.

        Returns its :class:`PluginInfo`, whose ``error`` says why it failed, if it did.
        """
        info = PluginInfo(name=name, source=SOURCE_REGISTERED)
        self._add(plugin, info)
        return info

    def _entry_points(self) -> list[entrypoints.EntryPoint]:
        try:
            return entrypoints.entry_points(ENTRY_POINT_GROUP)
        except Exception:  # a broken installed distribution must not hide the others
            logger.exception("Could not list the entry points of group %r", ENTRY_POINT_GROUP)
            return []

    def _load_entry_point(self, entry_point: entrypoints.EntryPoint) -> None:
        dist = getattr(entry_point, "dist", None)
        info = PluginInfo(
            name=entry_point.name,
            source=f"entry point {ENTRY_POINT_GROUP}: {entry_point.value}",
            distribution=_dist_name(dist),
            version=getattr(dist, "version", None),
        )
        if any(other.name == info.name and other.source == info.source for other in self._plugins):
            logger.debug("Entry point %r seen twice (installed twice?); the second is ignored", info.name)
            return
        try:
            plugin = entry_point.load()
        except BaseException as error:
            if not isinstance(error, Exception | SystemExit):
                raise  # KeyboardInterrupt and the like
            self._fail(info, error)
            self._plugins.append(info)
            return
        self._add(plugin, info)

    def _load_module(self, module_name: str) -> None:
        info = PluginInfo(name=module_name, source=SOURCE_EXTRA)
        try:
            module = importlib.import_module(module_name)
        except BaseException as error:
            if not isinstance(error, Exception | SystemExit):
                raise
            self._fail(info, error)
            self._plugins.append(info)
            return
        if self._pm.is_registered(module):
            logger.debug("%s names %r, which is already registered", EXTRA_PLUGINS_ENV, module_name)
            return
        self._add(module, info)

    def _add(self, plugin: object, info: PluginInfo) -> None:
        """Register ``plugin`` with pluggy, verify its hooks, collect its types; record any failure."""
        self._plugins.append(info)
        try:
            if self._pm.has_plugin(info.name):
                raise ValueError(f'a plugin named "{info.name}" is already registered')
            if self._pm.is_registered(plugin):
                raise ValueError(f'this plugin is already registered as "{self._pm.get_name(plugin)}"')
            self._pm.register(plugin, name=info.name)
        except Exception as error:  # e.g. a hookimpl with an argument the hook does not have
            if self._pm.get_plugin(info.name) is plugin:  # pluggy < 1.6 could register half a plugin
                self._pm.unregister(plugin)
            self._fail(info, error)
            return
        try:
            self._check_hooks(plugin)
            offered = self._collect_types(plugin, info.name)
        except Exception as error:
            self._pm.unregister(plugin)
            self._fail(info, error)
            return
        for kind in offered:
            self._types[kind.name] = kind
        info.types = [kind.name for kind in offered]
        if not offered:
            logger.warning('Plugin "%s" offers no resource types (%s)', info.name, NO_TYPES_HINT)
        else:
            logger.debug('Plugin "%s" offers resource types: %s', info.name, ", ".join(info.types))

    def _check_hooks(self, plugin: object) -> None:
        """``check_pending()`` for one plugin: a misspelled hook fails at load, with a did-you-mean."""
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as error:
            if error.plugin is not plugin:  # cannot happen: failed plugins are unregistered
                raise
            known = [name for name in vars(self._pm.hook) if self._pm.hook.__dict__[name].has_spec()]
            for caller in self._pm.get_hookcallers(plugin) or []:
                if caller.has_spec():
                    continue
                suggestion = did_you_mean(caller.name, known)
                hint = f" ({suggestion})" if suggestion else f" (sghost's hooks: {', '.join(known)})"
                raise pluggy.PluginValidationError(plugin, f'unknown hook "{caller.name}"{hint}') from None
            raise

    def _collect_types(self, plugin: object, plugin_name: str) -> list[ResourceType]:
        """Call this plugin's ``register_resource_types`` alone; raise on any bad registration."""
        offered: list[ResourceType] = []
        mistakes: list[Exception] = []

        def register(
            type_name: str,
            setup: Setup,
            *,
            check_settings: CheckSettings | None = None,
            description: str = "",
            ready: str = "connected",
        ) -> None:
            problem = _type_name_problem(type_name)
            error: Exception | None = ValueError(problem) if problem else None
            if error is None:
                error = _registration_error(type_name, setup, check_settings, description)
            if error is None and ready not in READY_MODES:
                suggestion = did_you_mean(str(ready), READY_MODES)
                error = ValueError(
                    f'ready of resource type "{type_name}": {ready!r} is not a ready mode; expected one of '
                    f'{", ".join(READY_MODES)}' + (f"; {suggestion}" if suggestion else "")
                )
            if error is None:
                owner = self._types.get(type_name)
                if owner is not None:
                    error = ValueError(
                        f'resource type "{type_name}" is already registered by plugin "{owner.plugin}"'
                    )
                elif any(kind.name == type_name for kind in offered):
                    error = ValueError(f'resource type "{type_name}" is registered twice by this plugin')
            if error is not None:
                mistakes.append(error)
                raise error
            offered.append(
                ResourceType(
                    type_name, setup, plugin_name, check_settings=check_settings, description=description, ready=ready
                )
            )

        others = [other for other in self._pm.get_plugins() if other is not plugin]
        caller = self._pm.subset_hook_caller("register_resource_types", remove_plugins=others)
        caller(register=register)
        if mistakes:  # the plugin caught the exception of a bad register() call: still its failure
            raise mistakes[0]
        return offered

    def _fail(self, info: PluginInfo, error: BaseException) -> None:
        info.error = one_line_error(error)
        info.types = []
        info.traceback = "".join(traceback_module.format_exception(error))
        logger.error('Plugin "%s" (%s) failed to load: %s', info.name, info.source, info.error)
        logger.debug("Traceback of plugin %r:\n%s", info.name, info.traceback)


def _registration_error(
    type_name: str, setup: object, check_settings: object, description: object
) -> Exception | None:
    if not callable(setup):
        return TypeError(f'the setup of resource type "{type_name}" must be callable, not {type(setup).__name__}')
    if check_settings is not None and not callable(check_settings):
        return TypeError(
            f'check_settings of resource type "{type_name}" must be callable or None, '
            f"not {type(check_settings).__name__}"
        )
    if not isinstance(description, str):
        return TypeError(
            f'the description of resource type "{type_name}" must be a string, not {type(description).__name__}'
        )
    return None


def _dist_name(dist: object) -> str | None:
    if dist is None:
        return None
    name = getattr(dist, "name", None)  # Python 3.10+
    if name is None:
        metadata = getattr(dist, "metadata", None)
        name = metadata["Name"] if metadata is not None else None
    return str(name) if name else None


def _status(info: PluginInfo) -> str:
    if info.error is not None:
        return f"error: {info.error}"
    return "ok" if info.types else f"ok, but no resource types ({NO_TYPES_HINT})"


def format_plugins(registry: PluginRegistry) -> str:
    """The table printed by ``sghost plugins``: plugin, source, types, distribution and version, status.

    Ends without a newline (for ``print``).
    """
    infos = registry.plugins
    if not infos:
        text = f'No resource plugins installed (entry point group "{ENTRY_POINT_GROUP}").'
        if registry.autoload is False:
            text += f" Plugin autoload is off: {AUTOLOAD_DISABLE_ENV} is set."
        return text
    header = ("PLUGIN", "SOURCE", "TYPES", "DISTRIBUTION", "STATUS")
    rows = [
        (
            info.name,
            info.source,
            ", ".join(info.types) or "-",
            " ".join(part for part in (info.distribution, info.version) if part) or "-",
            _status(info),
        )
        for info in infos
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        return "  ".join([*cells, row[-1]]).rstrip()

    lines = [line(header), *(line(row) for row in rows)]
    failed = len(registry.failed)
    summary = f"{len(registry.types)} resource type(s) from {len(infos) - failed} plugin(s)"
    if failed:
        summary += f"; {failed} plugin(s) failed to load"
    if registry.autoload is False:
        summary += f"; autoload off ({AUTOLOAD_DISABLE_ENV})"
    return "\n".join([*lines, "", summary])
