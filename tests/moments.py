"""The moments the suite pins "now" to: no test reads the real date or hour.

A test that depends on "today" takes the `now` fixture (tests/conftest.py): the ordinary run gives it `DEFAULT`, a
Wednesday afternoon; the calendar run (`scripts/test`, or `pytest --calendar=all`) runs it once at every moment
below, where the bugs of the calendar live: weekends, just after UTC midnight (nothing billed yet today), month and
year ends, a leap day, and two years after the API-key epoch (2025-12-06, openai-admin-api.md §9).
A test that needs one kind of day (a Sunday, the 1st of a month) pins it itself from here.
"""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC

MOMENTS: dict[str, dt.datetime] = {
    "wednesday-1300": dt.datetime(2026, 11, 25, 13, tzinfo=UTC),
    "saturday-1000": dt.datetime(2026, 11, 28, 10, tzinfo=UTC),
    "sunday-0020": dt.datetime(2026, 11, 29, 0, 20, tzinfo=UTC),
    "first-0030": dt.datetime(2026, 12, 1, 0, 30, tzinfo=UTC),
    "month-end-2350": dt.datetime(2026, 11, 30, 23, 50, tzinfo=UTC),
    "new-years-eve-2350": dt.datetime(2026, 12, 31, 23, 50, tzinfo=UTC),
    "leap-day-1200": dt.datetime(2028, 2, 29, 12, tzinfo=UTC),
    "key-epoch-plus-2y": dt.datetime(2027, 12, 6, 13, tzinfo=UTC),
}

#: VictoriaMetrics drops a sample stamped more than 2 days ahead of its own (real) clock (monitoring-stack.md), so a
#: test that reads history back from it runs only at the moments before the day this list was written: past for
#: any real date from then on. The others (a year end, a leap day, 2027) are covered by the tests without it.
WRITTEN_ON = dt.date(2026, 12, 6)


def behind_victoriametrics(chosen: dict[str, dt.datetime]) -> dict[str, dt.datetime]:
    """The moments of `chosen` a real VictoriaMetrics accepts history for, whatever the real date."""
    return {name: moment for name, moment in chosen.items() if moment.date() < WRITTEN_ON}


#: The moment of a test that does not ask for another: a weekday afternoon, most of the day billed.
DEFAULT = MOMENTS["wednesday-1300"]
SATURDAY_1000 = MOMENTS["saturday-1000"]
SUNDAY_0020 = MOMENTS["sunday-0020"]
#: 20:00 of a weekday: a frozen fake's today-so-far is most of a day.
WEDNESDAY_2000 = dt.datetime(2026, 11, 25, 20, tzinfo=UTC)
SUNDAY_1300 = dt.datetime(2026, 11, 29, 13, tzinfo=UTC)


def moments(spec: str) -> dict[str, dt.datetime]:
    """The moments a `--calendar` value names: `all`, or names separated by commas (ValueError for an unknown one)."""
    if spec.strip() == "all":
        return dict(MOMENTS)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in MOMENTS]
    if unknown:
        raise ValueError(f"unknown moment(s) {', '.join(unknown)}; known: all, {', '.join(MOMENTS)}")
    return {name: MOMENTS[name] for name in names}
