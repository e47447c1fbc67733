"""The running host: the supervisor (the arbiter) and its parts.

The event loop and the zygote link; the resource table (one watcher per
resource, with its restart policy); the desired-state path; health sampling;
the broker and the uplink; the event stream and the reporters that follow it;
also the control socket, systemd and the embedded broker. docs/architecture.md
has the picture.
"""
