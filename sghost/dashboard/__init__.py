"""The gateway's own web page and its small API (``[dashboard]``, docs/dashboard.md).

A layer of its own between the host and the command line: it runs in a process
forked by the zygote (:mod:`sghost.host.dashboardprocess`), never in the
supervisor's loop, and like the command line it is a client of the host's
control socket. Standard library only: ``http.server`` and ``ssl``.
"""
