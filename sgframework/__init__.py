"""sgframework: the Secure Gateway App/Resource library, on paho-mqtt 2.x."""

from sgframework.framework import App, Resource

__version__ = "1.0.0"

__all__ = ["App", "Resource", "__version__"]
