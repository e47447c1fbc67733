"""Health and its publishers: the meta-resource.

The supervisor's side (dead bands, the handle on the meta-resource's process,
the messages it is sent) and the meta-resource itself, which publishes health
as MQTT data, with Home Assistant discovery and the uplink's state.
"""
