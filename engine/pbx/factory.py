"""Build a driver from its config section. The only module that knows every driver."""

from __future__ import annotations

from engine.core.config import AsteriskSwitch, FreeSwitchSwitch
from engine.pbx.base import PbxDriver


def build_driver(sw: AsteriskSwitch | FreeSwitchSwitch) -> PbxDriver:
    if isinstance(sw, AsteriskSwitch):
        from engine.pbx.asterisk.driver import AsteriskDriver

        return AsteriskDriver(
            name=sw.name,
            host=sw.host,
            port=sw.port,
            username=sw.username,
            secret=sw.secret.get_secret_value(),
            action_timeout_s=sw.action_timeout_s,
            ping_interval_s=sw.ping_interval_s,
            agi_host=sw.agi_host,
            agi_port=sw.agi_port,
        )
    from engine.pbx.freeswitch.driver import FreeSwitchDriver

    host, _, port = sw.outbound_bind.rpartition(":")
    return FreeSwitchDriver(
        name=sw.name,
        host=sw.host,
        port=sw.port,
        password=sw.password.get_secret_value(),
        command_timeout=sw.action_timeout_s,
        heartbeat_timeout=sw.heartbeat_timeout_s,
        ivr_host=host,
        ivr_port=int(port),
    )
