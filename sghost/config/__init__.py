"""Manifest to plan: the TOML manifest read into a validated ``HostConfig``.

Also the manifest checked against the installed plugins, and what a reload changes.
"""
