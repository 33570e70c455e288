"""Post timestamps: the optional ``created_at`` column, parsed once and written one way.

Accepted inputs, per cell:

- ISO 8601 with an offset: ``2026-03-02T08:15:00+01:00``, ``2026-03-02T07:15:00Z``; kept at its
  own offset, because the offset says the poster's wall-clock time, which is what daily
  routines are about;
- ISO 8601 without an offset (``2026-03-02 08:15``): a wall-clock time in ``data.timezone``;
- epoch seconds (an integer or decimal number, or such a string): an instant, shown in
  ``data.timezone``;
- a datetime from a Parquet timestamp column (naive ones as above).

Everything is written back as ``YYYY-MM-DDTHH:MM:SS+HH:MM`` (the canonical form, seconds
precision), which every semloc output uses and `semloc profile` reads without re-parsing.
Anything else (``yesterday``, ``2026-13-01``, ``NaN``, ``true``) is a bad row, named by the
reader; a missing or empty cell means "no time" and is not an error.
"""

from __future__ import annotations

import math
import numbers
import re
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from semloc.errors import ConfigError

# 1970-01-01 .. 2100-01-01: a number outside is a unit mistake (milliseconds) rather than a time
EPOCH_RANGE = (0, 4_102_444_800)
CANONICAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?$")


def resolve_timezone(name: str) -> tzinfo:
    """An IANA zone ("Europe/Berlin") or "UTC"; an unknown name is a ConfigError naming it."""
    if name in ("UTC", "utc", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            f"config key 'data.timezone': unknown time zone {name!r} (use an IANA name such as "
            "'Europe/Berlin' or 'UTC')"
        ) from None


def parse_timestamp(value: object, zone: tzinfo) -> datetime | None:
    """An aware datetime for one ``created_at`` cell; None for a missing/empty cell.

    Raises ValueError with a short reason for anything that is not a time."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a true/false value is not a time")
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if isinstance(value, numbers.Real):  # numpy integers and floats too (DataFrames)
        return _from_epoch(float(value), zone)
    if not isinstance(value, str):
        raise ValueError(f"expected ISO 8601 text or epoch seconds, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    if _NUMBER.match(text):
        return _from_epoch(float(text), zone)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO 8601 time (e.g. 2026-03-02T08:15:00+01:00)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _from_epoch(seconds: float, zone: tzinfo) -> datetime:
    if not math.isfinite(seconds) or not EPOCH_RANGE[0] <= seconds < EPOCH_RANGE[1]:
        raise ValueError(
            f"epoch seconds {seconds:g} outside 1970..2100 (milliseconds? divide by 1000)"
        )
    return datetime.fromtimestamp(seconds, tz=zone)


def format_timestamp(moment: datetime) -> str:
    """The canonical text form, at the datetime's own offset (seconds precision)."""
    offset = moment.utcoffset()
    if offset is not None and offset.total_seconds() % 60:
        # historic local mean time (e.g. +00:53:28) has no minute-precision offset: say it in UTC
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="seconds")


def canonical_timestamp(value: object, zone: tzinfo) -> str | None:
    """parse_timestamp then format_timestamp: what the posts reader stores."""
    moment = parse_timestamp(value, zone)
    return None if moment is None else format_timestamp(moment)
