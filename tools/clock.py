"""The current time, which a model cannot know on its own.

Zone data comes from the system (/usr/share/zoneinfo on Debian) or, when installed, the `tzdata` package.
"""

import functools
import zoneinfo
from datetime import datetime

from pixeltable.func.udf import udf

# Longer names cannot be IANA zones; refusing them early keeps them out of file-system lookups and error text.
MAX_TIMEZONE_LENGTH = 64


@udf(is_deterministic=False)
def current_time(timezone: str) -> str:
    """Get the current date, time and weekday in a timezone.

    Pass an IANA timezone name such as "Europe/Paris", "America/New_York" or "UTC". The answer looks like
    "2025-01-31T14:05:09+01:00[Europe/Paris] (Friday)".
    """
    zone = _find_zone(timezone.strip())
    if zone is None:
        shown = timezone[:MAX_TIMEZONE_LENGTH]
        return f"Unknown timezone '{shown}'. Use an IANA name such as 'Europe/Paris' or 'UTC'."
    now = datetime.now(zone)
    return f"{now.isoformat(timespec='seconds')}[{zone.key}] ({now:%A})"


def _find_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """Look a zone up exactly, then ignoring case, because models sometimes write "utc" or "europe/paris"."""
    if not name or len(name) > MAX_TIMEZONE_LENGTH:
        return None
    return _load_zone(name) or _load_zone(_zone_names_by_lowercase().get(name.lower()))


def _load_zone(key: str | None) -> zoneinfo.ZoneInfo | None:
    if key is None:
        return None
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None  # malformed keys raise ValueError; directories and unreadable files, OSError


@functools.cache
def _zone_names_by_lowercase() -> dict[str, str]:
    """Map lowercased zone names to real ones; cached because listing the zones walks the zone directories."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}
