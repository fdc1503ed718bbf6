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
