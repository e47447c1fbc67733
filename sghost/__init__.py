"""sghost: runs Secure Gateway resources, each in its own supervised process."""

__version__ = "0.1.0"
