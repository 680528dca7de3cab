"""Calling windows in the contact's local time. Pure: the clock is an argument.

A contact may be dialled only while its window is open *in its own time zone*: the day is one
of ``window.days``, not one of ``window.holidays`` (a date in the contact's local calendar), and
the local time of day is in ``[start, end)``. Time zones are IANA names (``zoneinfo``), so
daylight-saving changes are the tz database's, not ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.campaigns.model import WEEKDAYS, CallingWindow


class UnknownTimeZone(ValueError):
    pass


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise UnknownTimeZone(f"unknown time zone {name!r} (expected an IANA name)") from err


def is_open(window: CallingWindow, tz: str, now: datetime) -> bool:
    """Whether ``window`` is open for a contact in ``tz`` at the aware instant ``now``."""
    local = now.astimezone(zone(tz))
    start, end = window.start_time, window.end_time
    clock = local.time().replace(tzinfo=None)
    day = local.date()
    if end <= start and start != end and clock < end:
        day -= timedelta(days=1)  # the small hours belong to the window of the evening before
    if WEEKDAYS[day.weekday()] not in window.days or day in window.holidays:
        return False
    if start == end:
        return True
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end


def open_timezones(window: CallingWindow, tzs: Iterable[str], now: datetime) -> list[str]:
    """The zones among ``tzs`` whose window is open at ``now`` (the hopper's filter)."""
    return sorted({tz for tz in tzs if is_open(window, tz, now)})


def next_open(window: CallingWindow, tz: str, after: datetime) -> datetime | None:
    """The first instant at or after ``after`` when the window is open in ``tz`` (UTC), or None
    if it never opens within the next 400 days (every day a holiday)."""
    if is_open(window, tz, after):
        return after.astimezone(UTC)
    z = zone(tz)
    local = after.astimezone(z)
    for offset in range(0, 401):
        day = local.date() + timedelta(days=offset)
        start = datetime.combine(day, window.start_time, tzinfo=z)
        # A start inside a DST gap normalises forward; one in the past of `after` is skipped.
        start = start.astimezone(UTC).astimezone(z)
        if start < local:  # today's start has passed (and the window is shut)
            continue
        if WEEKDAYS[start.weekday()] in window.days and start.date() not in window.holidays:
            return start.astimezone(UTC)
    return None
