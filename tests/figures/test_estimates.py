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
    the median of six empty days and one real one), and a 4-day-old organization's Saturday reads its 4 days (its
    weekend has one day alone)."""
    assert usual_days(SATURDAY_1000, 7, first_hour=hour_of(SATURDAY_1000 - dt.timedelta(days=1, hours=2))) is None
    assert usual_days(SATURDAY_1000, 7, first_hour=None) is None
    four = hour_of(SATURDAY_1000 - dt.timedelta(days=4, hours=2))
    assert usual_days(SATURDAY_1000, 7, first_hour=four) == [1, 2, 3, 4]
    late = SATURDAY_1000.replace(hour=0, minute=5)  # the window begins in yesterday's last hour: 4 days back
    assert usual_days(late, 7, first_hour=hour_of(late - dt.timedelta(days=4))) == [1, 2, 3]
