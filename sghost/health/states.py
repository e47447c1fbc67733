"""A resource's states, as ``<res>_state`` carries them (supervisord's names, plus ``waiting``).

Defined here, in the health layer, so that every publisher of health (topics,
Home Assistant, Prometheus) and the watcher that sets them share one list.
"""

STARTING = "starting"
RUNNING = "running"
BACKOFF = "backoff"
STOPPING = "stopping"
STOPPED = "stopped"
FATAL = "fatal"
WAITING = "waiting"
STATES = (STARTING, RUNNING, BACKOFF, STOPPING, STOPPED, FATAL, WAITING)
