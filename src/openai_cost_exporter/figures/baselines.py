"""What a project usually spends: the baselines the spike rule and the forecast stand on (pure).

- The usual day is the median of the project's daily totals over the last `baseline_days` days of the same kind
  as the day judged (weekdays for a weekday, weekend days for a weekend day, up to four weeks back). A median of
  the same kind of day keeps a quiet weekend out of a Tuesday's baseline: with a 7-day mean, an ordinary weekday
  after a quiet weekend looked like a 1.6x spike. Its spread (a robust standard deviation) says how much the
  project's day usually varies: the spike rule also wants today above the usual day plus three spreads, so a
  noisy project's ordinary day is not a spike.
- By this hour: with hourly usage history, the usual day times the share of its spend the project usually has
  done by this time of the day (estimates.py `day_shares`), so a morning spike is seen in the morning; without
  usage access, the whole day (the comparison is then with a full day).
- The month-end forecast: month to date plus the recent daily pace (the mean of the last closed days) for the
  rest of the month, rather than a linear stretch of the first hours of the month.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal

from openai_cost_exporter.core.models import DAY, next_month
from openai_cost_exporter.core.money import ZERO
from openai_cost_exporter.rules.runaway import median

DayTotals = Mapping[dt.date, Mapping[str, Decimal]]
#: Closed days whose mean is the recent pace of the forecast.
PACE_DAYS = 7
#: How far back a baseline looks for days of its kind (four weeks: seven weekend days for a 7-day baseline).
LOOKBACK_DAYS = 28
MAD_TO_SIGMA = Decimal("1.4826")
_WEEKEND = 5  # date.weekday() of Saturday


def lookback(days: int) -> int:
    """How many days before today a baseline of `days` days of the same kind may read: what to load for it."""
    return max(days, LOOKBACK_DAYS)


def same_kind_days(today: dt.date, days: int) -> list[dt.date]:
    """The `days` most recent complete days of the same kind as `today` (weekdays, or weekend days), looking back
    at most `lookback(days)` days: a weekend day's baseline then holds several weekends, not one."""
    window = [today - dt.timedelta(days=n) for n in range(1, lookback(days) + 1)]
    alike = [day for day in window if (day.weekday() >= _WEEKEND) == (today.weekday() >= _WEEKEND)]
    return alike[:days] or window[:days]


def usual_day(totals: DayTotals, today: dt.date, days: int) -> dict[str, Decimal]:
    """Median daily cost of each project over `same_kind_days`; a day without spend counts as 0."""
    alike = same_kind_days(today, days)
    projects = {pid for day in alike for pid in totals.get(day, {})}
    usual = {pid: median([totals.get(day, {}).get(pid, ZERO) for day in alike]) for pid in projects}
    return {pid: amount for pid, amount in usual.items() if amount}


def spread(totals: DayTotals, today: dt.date, days: int) -> dict[str, Decimal]:
    """How much each project's day usually varies: 1.4826 x the median absolute deviation from its usual day
    over the same days (the standard deviation, for normal noise, without one odd day pulling it up)."""
    alike = same_kind_days(today, days)
    usual = usual_day(totals, today, days)
    result = {}
    for pid, middle in usual.items():
        deviation = median([abs(totals.get(day, {}).get(pid, ZERO) - middle) for day in alike])
        if deviation:
            result[pid] = deviation * MAD_TO_SIGMA
    return result


def by_this_hour(usual: Mapping[str, Decimal], shares: Mapping[str, Decimal] | None) -> dict[str, Decimal]:
    """The usual day scaled by the share usually spent by now (the whole day where no share is known)."""
    if shares is None:
        return dict(usual)
    return {pid: amount * shares.get(pid, Decimal(1)) for pid, amount in usual.items()}


def pace_forecast(totals: DayTotals, now: dt.datetime, month_to_date: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Month to date, plus the mean of the last PACE_DAYS closed days for what is left of the UTC month.

    Today counts at least its usual pace (it is not over). A project with no closed day of spend in that window
    is projected linearly from its month to date (its pace is unknown, not zero).
    """
    today = now.date()
    days_after_today = (next_month(today) - today - DAY).days
    paces = recent_pace(totals, today, month_to_date)
    forecast: dict[str, Decimal] = {}
    for pid, mtd in month_to_date.items():
        pace = paces[pid]
        if not pace:  # no recent closed day of spend: its pace is unknown, project the month so far
            forecast[pid] = month_forecast(mtd, now)
            continue
        today_so_far = totals.get(today, {}).get(pid, ZERO)
        forecast[pid] = mtd - today_so_far + max(today_so_far, pace) + pace * days_after_today
    return forecast


def recent_pace(totals: DayTotals, today: dt.date, subjects: Iterable[str]) -> dict[str, Decimal]:
    """USD per day of each subject: the mean of the last PACE_DAYS closed days (0 without spend in them)."""
    recent = [today - dt.timedelta(days=n) for n in range(1, PACE_DAYS + 1)]
    return {pid: sum((totals.get(day, {}).get(pid, ZERO) for day in recent), ZERO) / PACE_DAYS for pid in subjects}


def month_forecast(month_to_date: Decimal, now: dt.datetime) -> Decimal:
    """Linear projection of month-to-date spend to the end of the UTC month `now` falls in."""
    now = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
    start = dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
    end = dt.datetime.combine(next_month(start.date()), dt.time(), dt.UTC)
    elapsed = _microseconds(now - start)
    if elapsed == 0:  # the very first instant of the month: nothing to project from
        return month_to_date
    return month_to_date * _microseconds(end - start) / elapsed


def _microseconds(delta: dt.timedelta) -> Decimal:
    return Decimal((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
