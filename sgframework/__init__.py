"""sgframework: the Secure Gateway App/Resource library, on paho-mqtt 2.x.

``App`` and ``Resource`` are imported on first use, so that tools which only
need the names and topics (``sgframework.constants``, ``sgframework.topics``)
do not load paho and ssl.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "1.0.0"

__all__ = ["App", "PublishCounters", "PublishError", "Resource", "__version__"]

if TYPE_CHECKING:
    from sgframework.framework import App, PublishCounters, PublishError, Resource


def __getattr__(name: str) -> Any:
    if name in ("App", "PublishCounters", "PublishError", "Resource"):
        from sgframework import framework

        return getattr(framework, name)
    raise AttributeError(f"module 'sgframework' has no attribute {name!r}")
