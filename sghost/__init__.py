"""sghost: runs Secure Gateway resources, each in its own supervised process."""

from sghost.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]

__version__ = "0.1.0"
