"""The hooks a resource plugin implements.

A plugin is a module (named by an entry point in group ``sghost``) with
functions decorated ``@sghost.hookimpl``. Hooks evolve only by gaining
keyword arguments; an implementation names just the arguments it uses and
gives them no defaults (pluggy never passes defaults).
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "sghost"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_resource_types(register):  # type: ignore[no-untyped-def]
    """Offer resource types: call ``register(type_name, setup)`` once per type.

    ``setup(context)`` runs in the resource's own process; ``context`` is a
    :class:`sghost.context.ResourceContext`. Optional keyword arguments of
    ``register``: ``check_settings`` (``settings -> list[str]`` of problems,
    run by ``sghost check``) and ``description`` (one line for ``sghost plugins``).
    """
