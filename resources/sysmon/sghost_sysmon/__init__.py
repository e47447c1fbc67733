"""The gateway's own figures as data signals: CPU, load, memory, disks, temperatures, network, uptime."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sghost

from sghost_sysmon.settings import check_settings, read_settings

if TYPE_CHECKING:  # keep the entry-point module light: psutil is imported by setup, in the resource's process
    from sghost.context import ResourceContext
    from sghost.plugins import Register

__all__ = ["check_settings", "register_resource_types", "setup"]


def setup(context: ResourceContext) -> None:
    """Register one retained data signal per figure and sample them every ``interval`` seconds.

    Each figure is sent when it moved past its dead band; its last value is also
    published at every (re)connect, so a new subscriber and a restarted broker see it.
    """
    from sghost_sysmon.monitor import DeadBandFilter, Sampler, default_temperature_reader

    settings, problems = read_settings(context.settings)
    if problems:  # sghost check reports them first; `sghost run` and tests may get here
        raise ValueError("; ".join(problems))
    sampler = Sampler(settings, context.logger, default_temperature_reader())
    first = sampler.sample()
    for name in sampler.signal_names():
        context.resource.register_outgoing_data(name, defaultvalue=first.get(name), send_data_as_retained=True)
    deadbands = DeadBandFilter(settings.deadbands, dict(first))

    def send_changed() -> None:
        for name, value in deadbands.changed(sampler.sample()).items():
            context.resource.send_data(name, value)

    context.every(settings.interval, send_changed)
    context.logger.info(
        "Sampling %d figures every %g s: %s", len(sampler.signal_names()), settings.interval,
        ", ".join(sampler.signal_names()),
    )


@sghost.hookimpl
def register_resource_types(register: Register) -> None:
    """Offer the resource type ``sysmon``."""
    register("sysmon", setup, check_settings=check_settings,
             description="the gateway's CPU, load, memory, disks, temperatures, network bytes and uptime")
