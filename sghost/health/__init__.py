"""Health and its publishers.

The supervisor's side (dead bands, the handle on the meta-resource process)
and the meta-resource process that publishes health as MQTT data.
"""
