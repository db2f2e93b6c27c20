"""The city's calendar: dates in Asia/Tokyo, Japanese fiscal years, expiry instants.

Instants are stored in UTC everywhere; a *date* (a day of earning, an expiry date, a cap's day or
month) is always the date in Asia/Tokyo, whatever the server's own time zone.

* The fiscal year (年度) ``FY n`` runs from April 1 of year ``n`` to March 31 of ``n + 1``.
* Points "valid until D" can be spent until the end of D in Tokyo: they expire at the start of
  D + 1, Asia/Tokyo (``expiry_instant``). ``usable_on(D, at)`` is the one test for it.
* ``NEVER`` is the expiry date of points that do not expire (a real date, so that bucket keys
  and orderings need no NULL cases).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")
#: The expiry date of points that never expire.
NEVER = date(9999, 12, 31)


def tokyo_date(instant: datetime) -> date:
    """The date in Asia/Tokyo at ``instant`` (an aware datetime)."""
    if instant.tzinfo is None:
        raise ValueError("instants must carry a time zone")
    return instant.astimezone(TOKYO).date()


def start_of_day(day: date) -> datetime:
    """00:00 of ``day`` in Asia/Tokyo, as a UTC instant."""
    return datetime.combine(day, time(0), tzinfo=TOKYO).astimezone(UTC)


def expiry_instant(valid_until: date) -> datetime | None:
    """When points valid until ``valid_until`` expire (the start of the next day in Tokyo);
    ``None`` for ``NEVER``."""
    if valid_until >= NEVER:
        return None
    return start_of_day(valid_until + timedelta(days=1))


def usable_at(valid_until: date, instant: datetime) -> bool:
    """Whether points valid until ``valid_until`` are still unexpired at ``instant``."""
    return tokyo_date(instant) <= valid_until


def fiscal_year(day: date) -> int:
    """The Japanese fiscal year of ``day``: April to March, named by the year it starts."""
    return day.year if day.month >= 4 else day.year - 1


def fiscal_year_start(year: int) -> date:
    return date(year, 4, 1)


def fiscal_year_end(year: int) -> date:
    """The last day of fiscal year ``year`` (March 31 of the next calendar year)."""
    return date(year + 1, 3, 31)


def end_of_month(year: int, month: int) -> date:
    """The last day of ``month`` of ``year``; ``month`` may run past 12 (it carries)."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    first_of_next = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return first_of_next - timedelta(days=1)


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole months, clamped to the month's last day (Jan 31 + 1 = Feb 28)."""
    last = end_of_month(day.year, day.month + months)
    return last if day.day > last.day else last.replace(day=day.day)
