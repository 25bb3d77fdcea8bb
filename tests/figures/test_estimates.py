"""Which earlier days the usual rate reads (figures/estimates.py `usual_days`)."""

from __future__ import annotations

import datetime as dt

from openai_cost_exporter.figures.estimates import hour_of, usual_days
from tests.moments import DEFAULT, SATURDAY_1000

DAY = 86_400


def test_a_weekday_reads_the_weekdays_of_the_week_before() -> None:
    """A Wednesday's usual rate is the median of the 5 weekdays among the 7 days before (not its quiet weekend)."""
    assert DEFAULT.weekday() == 2
    assert usual_days(DEFAULT, 7, first_hour=hour_of(DEFAULT) - 30 * DAY) == [1, 2, 5, 6, 7]


def test_a_weekend_day_reads_the_weekend_days_of_the_week_before() -> None:
    """A Saturday's usual rate is the median of the 2 weekend days of the week before (a weekend-heavy project's
    Saturday is not judged against its quiet weekdays)."""
    assert usual_days(SATURDAY_1000, 7, first_hour=hour_of(SATURDAY_1000) - 30 * DAY) == [6, 7]


def test_a_young_organization_reads_only_the_days_it_has() -> None:
    """Before the first hour of usage the rate is unknown, not $0: with fewer than 3 days there is no usual (not
    the median of six empty days and one real one), nor on a 4-day-old organization's first Saturday (its weekdays
    say nothing of a weekend); just after midnight the window is the day before's, and so is its kind."""
    assert usual_days(SATURDAY_1000, 7, first_hour=hour_of(SATURDAY_1000 - dt.timedelta(days=1, hours=2))) is None
    assert usual_days(SATURDAY_1000, 7, first_hour=None) is None
    four = hour_of(SATURDAY_1000 - dt.timedelta(days=4, hours=2))
    assert usual_days(SATURDAY_1000, 7, first_hour=four) is None
    late = SATURDAY_1000.replace(hour=0, minute=5)  # the window begins in Friday's last hour: weekdays
    assert usual_days(late, 7, first_hour=hour_of(late - dt.timedelta(days=4))) == [1, 2, 3]


def test_just_after_midnight_the_window_is_read_with_the_day_it_falls_in() -> None:
    """Monday 00:05's window is Sunday 23:55: it is compared with the weekend nights of the week before, not with
    the weekday nights."""
    monday = dt.datetime(2026, 11, 30, 0, 5, tzinfo=dt.UTC)
    start = int((monday - dt.timedelta(minutes=10)).timestamp())
    assert usual_days(monday, 7, first_hour=hour_of(monday) - 30 * DAY, start=start) == [1, 7]
