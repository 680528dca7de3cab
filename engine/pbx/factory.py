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
    import ipaddress

    from engine.pbx.freeswitch.driver import FreeSwitchDriver
    from engine.pbx.freeswitch.media_tap import MediaTap

    host, _, port = sw.outbound_bind.rpartition(":")
    tap_host, _, tap_port = sw.amd_tap_bind.rpartition(":")
    low, _, high = sw.amd_tap_ports.partition("-")
    try:
        switch_ip = str(ipaddress.ip_address(sw.host))
    except ValueError:
        switch_ip = "127.0.0.1"  # a host name: FreeSWITCH on this machine (docs/amd.md)
    return FreeSwitchDriver(
        name=sw.name,
        host=sw.host,
        port=sw.port,
        password=sw.password.get_secret_value(),
        command_timeout=sw.action_timeout_s,
        heartbeat_timeout=sw.heartbeat_timeout_s,
        ivr_host=host,
        ivr_port=int(port),
        moh_streams=sw.moh_streams,
        media_tap=MediaTap(
            listen_host=tap_host.strip("[]"),
            listen_port=int(tap_port),
            switch_ip=switch_ip,
            ports=range(int(low), int(high) + 1),
        ),
    )
