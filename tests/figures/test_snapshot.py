"""Snapshot figures: baseline, month to date, forecast, project ids, exact Decimal sums."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from openai_cost_exporter.figures.baselines import month_forecast
from openai_cost_exporter.figures.snapshot import PAGE_DAYS, baseline, build_snapshot, month_to_date

D = Decimal
TODAY = dt.date(2026, 11, 28)
NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)


def day(offset: int) -> dt.date:
    return TODAY - dt.timedelta(days=offset)


def test_baseline_counts_missing_days_as_zero() -> None:
    """Days without spend count as 0 in the median once the organization has a history: a project that spent on 3
    of the 7 weekdays before a Wednesday has no usual day, one on 4 of them has its median."""
    wednesday = dt.date(2026, 11, 25)
    weekdays = [dt.date(2026, 11, d) for d in (24, 23, 20, 19, 18, 17, 16)]
    history = {dt.date(2026, 10, 28): {"other": D(1)}}  # the organization spends from four weeks back
    rare = {**history, **{d: {"a": D("7")} for d in weekdays[:3]}}
    assert "a" not in baseline(rare, wednesday, 7)
    common = {**history, **{d: {"a": D(n)} for n, d in enumerate(weekdays[:4], start=4)}}  # 4, 5, 6, 7, 3 zeros
    assert baseline(common, wednesday, 7)["a"] == D(4)


def test_days_before_the_organization_began_are_unknown_not_zero() -> None:
    """A 9-day-old organization's first Sunday: its weekend days are few, so the baseline reads its recent days of
    any kind, the weekdays scaled by the project's own weekend/weekday ratio; the 19 days before it began are not
    seven $0 weekend days (that made every project "new spend")."""
    sunday = dt.date(2026, 12, 6)
    began = sunday - dt.timedelta(days=9)  # Friday 2026-11-27
    totals = {
        began + dt.timedelta(days=n): {"a": D(4) if (began + dt.timedelta(days=n)).weekday() >= 5 else D(10)}
        for n in range(9)
    }
    assert sorted(d.weekday() for d in totals if d.weekday() >= 5) == [5, 5, 6]  # three weekend days: enough alone
    assert baseline(totals, sunday, 7) == {"a": D(4)}
    saturday = dt.date(2026, 11, 28)  # its first weekend day: no weekend day known, the recent days unscaled
    weekdays_only = {began - dt.timedelta(days=n): {"a": D(10)} for n in (0, 1, 2)}  # Wednesday to Friday
    assert baseline(weekdays_only, saturday, 7) == {"a": D(10)}


def test_a_young_organization_first_weekend_scales_its_weekdays() -> None:
    """With one weekend day known, a Sunday's usual is the median of the recent days, the weekdays scaled by the
    project's weekend/weekday ratio (here 0.4)."""
    sunday = dt.date(2026, 12, 6)
    totals = {sunday - dt.timedelta(days=n): {"a": D(4) if n == 1 else D(10)} for n in range(1, 6)}  # Tue..Sat
    assert baseline(totals, sunday, 7) == {"a": D(4)}


def test_too_short_a_history_has_no_usual_day() -> None:
    """Fewer than three known days: the snapshot has no baseline at all and says it is not known, so the spike
    rule judges nothing (a day-old organization is not all "new spend")."""
    now = dt.datetime(2026, 12, 6, 13, tzinfo=dt.UTC)
    young = {dt.date(2026, 12, 5): {"a": D(10)}, dt.date(2026, 12, 6): {"a": D(30)}}
    snap = build_snapshot(now, {"a": "A"}, young, baseline_days=7)
    assert not snap.baseline_known and snap.baseline == {} and snap.spread == {}
    older = {**young, dt.date(2026, 12, 3): {"a": D(10)}}  # the 4th and 5th are known $0 days after it began
    assert build_snapshot(now, {"a": "A"}, older, baseline_days=7).baseline_known


def test_baseline_is_the_same_kind_of_day() -> None:
    """A weekday's baseline is the median of the last weekdays (a quiet weekend does not lower it); a weekend
    day's is the median of the last weekend days, four weeks back; today and later days are left out."""
    tuesday = dt.date(2026, 11, 24)
    totals = {tuesday - dt.timedelta(days=n): {"a": D(10)} for n in range(1, 29)}
    for weekend in (dt.date(2026, 11, 22), dt.date(2026, 11, 21)):
        totals[weekend] = {"a": D(2)}
    totals[tuesday] = {"a": D(1000)}
    totals[tuesday + dt.timedelta(days=1)] = {"a": D(500)}
    assert baseline(totals, tuesday, 7) == {"a": D(10)}
    assert baseline(totals, dt.date(2026, 11, 28), 7) == {"a": D(10)}  # Saturday: 2 of its 7 weekend days are 2


def test_baseline_of_zero_days_is_empty() -> None:
    """A zero-day window gives no baseline instead of dividing by zero."""
    assert baseline({day(1): {"a": D(1)}}, TODAY, 0) == {}


def test_month_to_date_only_this_month() -> None:
    """Month to date sums the 1st through today, not last month, not the same month last year, not the future."""
    totals = {
        dt.date(2026, 10, 31): {"a": D("100")},
        dt.date(2025, 11, 15): {"a": D("100")},
        dt.date(2026, 11, 1): {"a": D("1.5"), "b": D("2")},
        TODAY: {"a": D("0.25")},
        dt.date(2026, 11, 29): {"a": D("100")},
    }
    assert month_to_date(totals, TODAY) == {"a": D("1.75"), "b": D("2")}


def test_month_to_date_on_the_first() -> None:
    """On the 1st of the month only the 1st counts, even right after a big last day of the previous month."""
    totals = {dt.date(2026, 11, 30): {"a": D("50")}, dt.date(2026, 12, 1): {"a": D("1")}}
    assert month_to_date(totals, dt.date(2026, 12, 1)) == {"a": D("1")}


def test_build_snapshot_figures() -> None:
    """Every figure of the snapshot comes from the daily totals of the right days."""
    totals = {
        TODAY: {"a": D("4")},
        day(1): {"a": D("2"), "b": D("1")},
        day(2): {"b": D("1")},
        dt.date(2026, 10, 31): {"old": D("9")},
    }
    snap = build_snapshot(NOW, {"a": "Alpha"}, totals, baseline_days=2)
    assert snap.day == TODAY
    assert snap.taken_at == NOW
    assert snap.today == {"a": D("4")}
    assert snap.baseline == {}  # Saturday: its two weekend days (Nov 22, 21) had no spend
    weekday = build_snapshot(
        NOW - dt.timedelta(days=3), {}, {d - dt.timedelta(days=3): v for d, v in totals.items()}, baseline_days=2
    )
    assert weekday.baseline == {"a": D("1"), "b": D("1")}  # Wednesday: the median of Tuesday and Monday
    assert snap.month_to_date == {"a": D("6"), "b": D("2")}
    assert snap.line_items is None


def test_forecast_without_a_recent_pace_uses_month_forecast() -> None:
    """A project without spend in the last 7 closed days is projected linearly from its month to date."""
    totals = {TODAY: {"a": D("3.3")}, dt.date(2026, 11, 2): {"b": D("1.1")}}
    snap = build_snapshot(NOW, {}, totals, baseline_days=7)
    assert snap.forecast == {"a": month_forecast(D("3.3"), NOW), "b": month_forecast(D("1.1"), NOW)}
    # Nov 28 12:00 is 27.5 of 30 days: the projection is 30 / 27.5 of month to date.
    assert snap.forecast["a"] == D("3.3") * 30 / D("27.5")


def test_project_ids_union_sorted() -> None:
    """project_ids covers spend today, in the baseline window or this month, sorted, without duplicates."""
    totals = {
        TODAY: {"today-only": D(1), "both": D(1)},
        day(1): {"both": D(1)},
        dt.date(2026, 11, 1): {"baseline-only": D(1)},  # inside a 2-day weekend baseline (Nov 1 is a Sunday)
        dt.date(2026, 11, 3): {"month-only": D(1)},
    }
    totals[dt.date(2026, 11, 22)] = {"baseline-only": D(1)}  # the Sunday before: a median of 2 of 2 weekend days
    snap = build_snapshot(NOW, {}, totals, baseline_days=7)
    assert snap.project_ids == ["baseline-only", "both", "month-only", "today-only"]


def test_names_fall_back_to_id() -> None:
    """A project without a known name is shown by its id."""
    snap = build_snapshot(NOW, {"a": "Alpha"}, {TODAY: {"a": D(1), "b": D(1)}}, baseline_days=1)
    assert snap.name("a") == "Alpha"
    assert snap.name("b") == "b"


def test_decimal_sums_stay_exact() -> None:
    """Thousands of long decimal amounts sum exactly (no float rounding) in today, month to date and total."""
    amount = D("0.000123456789012345")
    totals = {dt.date(2026, 11, n): {f"p{i}": amount for i in range(100)} for n in range(1, 29)}  # 2800 amounts
    snap = build_snapshot(NOW, {}, totals, baseline_days=7)
    assert snap.month_to_date["p0"] == amount * 28
    assert snap.total(snap.today) == D("0.0123456789012345")
    assert snap.total(snap.month_to_date) == D("0.345679009234566")
    assert float(sum([0.000123456789012345] * 2800)) != 0.345679009234566  # what floats would have given


def test_total_of_nothing_is_decimal_zero() -> None:
    """total() of empty figures is Decimal 0, not int 0."""
    snap = build_snapshot(NOW, {}, {}, baseline_days=7)
    assert snap.total(snap.today) == D(0)
    assert isinstance(snap.total(snap.today), Decimal)
    assert snap.project_ids == []


def test_history_keeps_last_page_days() -> None:
    """History holds the last PAGE_DAYS days including today, and nothing older."""
    totals = {day(n): {"a": D(n)} for n in range(PAGE_DAYS + 5)}
    snap = build_snapshot(NOW, {}, totals, baseline_days=7)
    assert sorted(snap.history) == [day(n) for n in reversed(range(PAGE_DAYS))]


def test_line_items_copied() -> None:
    """Line items are kept (copied) when given; None stays None."""
    items = {("a", "gpt-4o, input"): D("1.25")}
    snap = build_snapshot(NOW, {}, {TODAY: {"a": D("1.25")}}, baseline_days=7, line_items=items)
    items[("a", "other")] = D(1)
    assert snap.line_items == {("a", "gpt-4o, input"): D("1.25")}


def test_snapshot_is_immutable_and_independent_of_inputs() -> None:
    """Changing the inputs after the build does not change the snapshot, and fields cannot be reassigned."""
    names = {"a": "Alpha"}
    today_totals = {"a": D(1)}
    snap = build_snapshot(NOW, names, {TODAY: today_totals}, baseline_days=7)
    names["a"] = "Changed"
    today_totals["a"] = D(99)
    assert snap.name("a") == "Alpha"
    assert snap.today == {"a": D(1)}
    assert snap.history[TODAY] == {"a": D(1)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.day = TODAY  # type: ignore[misc]


@pytest.mark.parametrize(
    "now",
    [
        dt.datetime(2026, 11, 29, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))),  # 2026-11-28 20:00 UTC
        dt.datetime(2026, 11, 28, 20),  # naive: UTC
    ],
)
def test_day_is_the_utc_day(now: dt.datetime) -> None:
    """The snapshot's day is the UTC calendar day of `now`, whatever its zone."""
    snap = build_snapshot(now, {}, {TODAY: {"a": D(1)}}, baseline_days=7)
    assert snap.day == TODAY
    assert snap.today == {"a": D(1)}
    assert snap.taken_at.utcoffset() == dt.timedelta(0)


def test_a_young_organization_first_weekend_day_has_no_usual_day() -> None:
    """Four weekdays of history say nothing of a Saturday (a weekend-heavy project's): no usual day on the first
    weekend day; on the Sunday, the Saturday seen scales the weekdays."""
    saturday = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
    weekdays = {dt.date(2026, 11, d): {"a": D(10)} for d in (24, 25, 26, 27)}
    assert not build_snapshot(saturday, {"a": "A"}, weekdays, baseline_days=7).baseline_known
    with_saturday = {**weekdays, dt.date(2026, 11, 28): {"a": D(30)}}
    sunday = build_snapshot(saturday + dt.timedelta(days=1), {"a": "A"}, with_saturday, baseline_days=7)
    assert sunday.baseline_known and sunday.usual == {"a": D(30)}  # median of the Saturday and weekdays x 3


def test_a_weekday_project_of_a_young_organization_is_not_new_on_its_first_monday() -> None:
    """An organization that began on a Friday: a weekdays-only project's Monday is judged against its Friday, not
    against a median with the weekend's $0 days (which made it "new spend")."""
    monday = dt.date(2026, 11, 30)
    totals = {
        dt.date(2026, 11, 27): {"a": D(100)},
        dt.date(2026, 11, 28): {"b": D(5)},
        dt.date(2026, 11, 29): {"b": D(5)},
    }
    assert baseline(totals, monday, 7)["a"] == D(100)
