"""Time-zone names in configuration and rules files, checked once the same way."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def known_time_zone(name: str) -> str:
    """``name`` when it is an IANA time zone (``Asia/Shanghai``); ValueError otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


def zone(name: str) -> ZoneInfo:
    """The time zone named ``name`` (checked by :func:`known_time_zone` where it was read)."""
    return ZoneInfo(name)
