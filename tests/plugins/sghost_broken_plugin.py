"""A plugin whose dependency is missing: importing it fails, as a real one would without pyserial."""

from __future__ import annotations

raise ImportError("missing dependency: serial")
