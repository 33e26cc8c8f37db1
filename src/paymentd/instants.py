"""Instants that come from callers (query bounds, paging cursors), made safe to use.

Python's datetime and PostgreSQL's timestamptz have different ranges, and converting
an extreme value to UTC or comparing a naive one raises deep inside a query (a 500).
Every caller-supplied instant goes through `utc_instant`: aware, UTC, years 2 to 9998.
"""

from __future__ import annotations

from datetime import UTC, datetime

from paymentd.errors import InvalidRequest

# A margin of a year on each side of Python's range (1..9999): any offset, a day's
# bucket or a default 30-day span computed from an accepted instant cannot overflow.
FIRST_YEAR = 2
LAST_YEAR = 9998


def utc_instant(value: datetime, param: str, *, naive_is_utc: bool = True, message: str | None = None) -> datetime:
    """`value` in UTC, or a 400 naming `param`. A naive value is UTC, unless
    `naive_is_utc` is False (a value paymentd wrote itself is never naive)."""
    if value.tzinfo is None and not naive_is_utc:
        raise _invalid(param, message)
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _invalid(param, message) from None
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise _invalid(param, message)
    return moment


def _invalid(param: str, message: str | None) -> InvalidRequest:
    text = message or f"`{param}` is out of range (years {FIRST_YEAR} to {LAST_YEAR})."
    return InvalidRequest(text, code="parameter_invalid", param=param)
