"""Finding a switch's driver by name, with the 400 a client can act on."""

from __future__ import annotations

from collections.abc import Mapping

from engine.calls.errors import UnknownSwitch
from engine.pbx.base import PbxDriver


def named_driver(drivers: Mapping[str, PbxDriver], name: str) -> PbxDriver:
    try:
        return drivers[name]
    except KeyError:
        raise UnknownSwitch(
            f"unknown switch {name!r}",
            details={"switch": name, "known": sorted(drivers)},
        ) from None
