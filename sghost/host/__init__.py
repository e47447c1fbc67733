"""The running host: the supervisor's event loop and one watcher per resource.

Also the restart policy, the control socket it serves, systemd and the embedded broker.
"""
