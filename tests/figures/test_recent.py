"""Tests of the recent window: the runaway rate from 1-minute rows, the usage lag, the fetch of the minutes, the
single-minute guard, and the hourly fallback where no minutes are stored (a backtest's past hours)."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest

from openai_cost_exporter.core.defaults import RUNAWAY_MIN_USD, RUNAWAY_RATIO
from openai_cost_exporter.core.models import UsageRow
from openai_cost_exporter.figures.estimates import HOUR, USAGE_KINDS, build_estimates, fetch_usage, hour_of
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.figures.recent import (
    LAG_MINUTES,
    RECENT_MINUTES,
    USAGE_MINUTES_LIMIT,
    RecentWindow,
    recent_window,
    steady_sum,
    window_end,
)
from openai_cost_exporter.rules.runaway import RunawayFigures, is_runaway
from openai_cost_exporter.sources.openai.client import AdminClient
from openai_cost_exporter.sources.openai.usage_responses import MAX_LIMITS, UsagePage
from openai_cost_exporter.store.state import open_state
from openai_cost_exporter.store.usage_store import UsageStore

MINUTE = 60
DAY = 86400
MODEL = "gpt-4o-2024-08-06"


def dollars(r: UsageRow) -> Decimal | None:
    """A row's price: one dollar per output token, in cents (output tokens / 100)."""
    return Decimal(r.output_tokens) / 100


def row(start: int, cents: int, project: str = "proj_a") -> UsageRow:
    return UsageRow(start, project, MODEL, "completions", 0, 0, cents, 1)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_state(tmp_path / "state.sqlite3")
    yield connection
    connection.close()


def steady_hours(store: UsageStore, now: dt.datetime, cents_per_hour: int, project: str = "proj_a") -> None:
    """Eight days of hourly rows, the same spend every hour, up to the current hour."""
    hours = list(range(hour_of(now) - 8 * DAY, hour_of(now) + HOUR, HOUR))
    store.replace_hours("completions", hours, [row(h, cents_per_hour, project) for h in hours], dollars)


def minutes_up_to(store: UsageStore, now: dt.datetime, cents: list[int], project: str = "proj_a") -> None:
    """1-minute rows ending at the window's end (the last one the newest complete minute), marked covered."""
    end = window_end(now)
    starts = [end - (len(cents) - i) * MINUTE for i in range(len(cents))]
    store.replace_minutes(
        "completions", starts, [row(m, c, project) for m, c in zip(starts, cents, strict=True)], dollars
    )
    store.mark_minutes(min(starts), end)


def test_the_window_ends_at_the_last_complete_minute(now: dt.datetime) -> None:
    """The window ends LAG_MINUTES before the current minute began, whatever the second of the cycle."""
    moment = now.replace(second=0) + dt.timedelta(minutes=30, seconds=40)
    assert window_end(moment) == int(moment.timestamp()) // MINUTE * MINUTE - LAG_MINUTES * MINUTE
    assert window_end(moment) == window_end(moment.replace(second=0))


def test_the_rate_is_the_windows_spend_per_hour_and_the_usual_the_same_minutes(
    conn: sqlite3.Connection, now: dt.datetime
) -> None:
    """A dollar a minute for the window's minutes is $60/h, against a usual of $60/h from the hours ($60 each)."""
    store = UsageStore(conn)
    steady_hours(store, now, 6000)
    minutes_up_to(store, now, [100] * RECENT_MINUTES)
    estimates = build_estimates(store, now, history_days=7)
    assert estimates.rate["proj_a"] == Decimal(60)
    assert estimates.usual["proj_a"] == Decimal(60)
    assert estimates.models["proj_a"] == [(MODEL, Decimal(60))]


def test_an_incomplete_minute_does_not_dilute_the_rate(conn: sqlite3.Connection, now: dt.datetime) -> None:
    """Rows of the minutes still filling (after the window's end) are not read: a runaway's rate stays whole."""
    store = UsageStore(conn)
    steady_hours(store, now, 6000)
    minutes_up_to(store, now, [100] * (RECENT_MINUTES - 3) + [1000] * 3)
    end = window_end(now)
    store.replace_minutes("completions", [end, end + MINUTE], [row(end, 400), row(end + MINUTE, 10)], dollars)
    store.mark_minutes(end - RECENT_MINUTES * MINUTE, end + 2 * MINUTE)
    rate = build_estimates(store, now, history_days=7).rate["proj_a"]
    assert rate == Decimal((RECENT_MINUTES - 3) * 1 + 3 * 10) * 60 / RECENT_MINUTES
    assert rate > RUNAWAY_RATIO * 60


@pytest.mark.parametrize(
    ("cents", "expected"),
    [
        ([], 0),
        ([500], 0),  # one minute alone: no rate
        ([100, 500], 200),  # the largest counts as the second largest
        ([100, 100, 100], 300),
        ([1000, 1000, 100], 2100),  # a runaway of two minutes or more keeps every minute
    ],
)
def test_steady_sum_counts_the_largest_minute_as_the_second(cents: list[int], expected: int) -> None:
    """One lone minute does not make a rate; two or more of a runaway keep their full weight."""
    assert steady_sum([Decimal(c) for c in cents]) == Decimal(expected)


def test_a_small_projects_lone_large_request_is_no_runaway(conn: sqlite3.Connection, now: dt.datetime) -> None:
    """A project of $1/h with one $1 request in the window stays under the floor (without the guard: $8.5/h)."""
    store = UsageStore(conn)
    steady_hours(store, now, 100)
    minutes_up_to(store, now, [2] * (RECENT_MINUTES - 1) + [100])
    estimates = build_estimates(store, now, history_days=7)
    figures = estimates.runaway_figures({})[0]
    assert figures.rate < RUNAWAY_MIN_USD
    assert not is_runaway(figures, RUNAWAY_RATIO, RUNAWAY_MIN_USD)


def test_a_noisy_small_project_never_reaches_the_floor() -> None:
    """A $2/h project whose minutes are random (exponential, seeded) makes no runaway over a day of windows: the
    floor keeps it quiet, though its window often passes 3x its usual."""
    rng = random.Random(20)  # noqa: S311 - a seeded noise, not a secret
    spend = [Decimal(rng.expovariate(1)) * 2 / 60 for _ in range(24 * 60 + RECENT_MINUTES)]
    rates = [steady_sum(spend[i : i + RECENT_MINUTES]) * 60 / RECENT_MINUTES for i in range(24 * 60)]
    usual = Decimal(2) / 3  # a usual of the hour low enough for the ratio alone to fire
    figures = [RunawayFigures("proj_a", "A", rate, usual, [(MODEL, rate)]) for rate in rates]
    assert not any(is_runaway(f, RUNAWAY_RATIO, RUNAWAY_MIN_USD) for f in figures)
    assert any(f.rate > RUNAWAY_RATIO * usual for f in figures)


def test_without_minutes_for_the_moment_the_rate_is_the_last_60_minutes_of_the_hours(
    conn: sqlite3.Connection, now: dt.datetime
) -> None:
    """With no 1-minute rows covering the window (a backtest's past hour), the hourly window is read as before."""
    store = UsageStore(conn)
    steady_hours(store, now, 6000)
    store.replace_hours("completions", [hour_of(now)], [row(hour_of(now), 12000)], dollars)
    minutes_up_to(store, now - dt.timedelta(hours=3), [100] * RECENT_MINUTES)  # minutes, but of another moment
    moment = now.replace(minute=30, second=0)
    assert recent_window(store, moment) is None
    estimates = build_estimates(store, moment, history_days=7)
    assert estimates.rate["proj_a"] == Decimal(120) + Decimal(60) / 2
    assert estimates.usual["proj_a"] == Decimal(60)


class FakeUsage:
    """The client's `iter_usage`: records each request's width, window and limit; no rows."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, int, int, int]] = []

    def iter_usage(self, kind: str, start: int, end: int, *, width: str = "1h", limit: int = 6) -> Iterator[UsagePage]:
        self.asked.append((width, kind, start, end, limit))
        yield UsagePage(buckets=tuple(range(start, end, MINUTE if width == "1m" else HOUR)), rows=())

    def minutes(self) -> list[tuple[str, int, int, int]]:
        return sorted((kind, start, end, limit) for width, kind, start, end, limit in self.asked if width == "1m")


def fetch(store: UsageStore, fake: FakeUsage, moment: dt.datetime, *, recent: bool = True) -> None:
    fetch_usage(cast(AdminClient, fake), store, PriceBook(), moment, history_days=1, recent=recent)


def test_a_cold_fetch_asks_the_window_in_one_bounded_page(conn: sqlite3.Connection, now: dt.datetime) -> None:
    """The first fetch asks each endpoint for the window's minutes in 1m buckets, one page within the API's limit."""
    store, fake = UsageStore(conn), FakeUsage()
    fetch(store, fake, now)
    end = window_end(now)
    assert fake.minutes() == [(kind, end - RECENT_MINUTES * MINUTE, end, USAGE_MINUTES_LIMIT) for kind in USAGE_KINDS]
    assert RECENT_MINUTES <= USAGE_MINUTES_LIMIT <= MAX_LIMITS["1m"]  # one page, within the API's maximum
    assert store.minutes_covered() == (end - RECENT_MINUTES * MINUTE, end)


def test_every_fetch_asks_the_whole_window_and_keeps_only_it(conn: sqlite3.Connection, now: dt.datetime) -> None:
    """A minute later the window is asked again whole (late usage revises a stored minute); the rows before the
    window are pruned and the span covered is the window's."""
    store = UsageStore(conn)
    old = window_end(now) - RECENT_MINUTES * MINUTE
    store.replace_minutes("completions", [old], [row(old, 100)], dollars)
    fetch(store, FakeUsage(), now)
    later, warm = now + dt.timedelta(minutes=1), FakeUsage()
    fetch(store, warm, later)
    end = window_end(later)
    assert warm.minutes() == [(k, end - RECENT_MINUTES * MINUTE, end, USAGE_MINUTES_LIMIT) for k in USAGE_KINDS]
    assert store.minutes_covered() == (end - RECENT_MINUTES * MINUTE, end)
    assert store.by_minute(0, end) == {}  # the old minute is gone, and the fetch brought no rows


def test_a_revised_minute_replaces_what_an_earlier_cycle_stored(conn: sqlite3.Connection, now: dt.datetime) -> None:
    """A runaway the usage endpoint no longer shows for a minute (revised) leaves the rate at the next cycle."""
    store = UsageStore(conn)
    steady_hours(store, now, 6000)
    minutes_up_to(store, now, [100] * (RECENT_MINUTES - 3) + [1000] * 3)
    assert build_estimates(store, now, history_days=7).rate["proj_a"] > RUNAWAY_RATIO * 60
    fetch(store, FakeUsage(), now)  # the endpoint now answers the window without rows
    assert build_estimates(store, now, history_days=7).rate.get("proj_a", 0) == 0
    assert recent_window(store, now) == RecentWindow(window_end(now) - RECENT_MINUTES * MINUTE, window_end(now), {}, {})


def test_without_recent_only_hours_are_fetched(conn: sqlite3.Connection, now: dt.datetime) -> None:
    """`recent=False` asks no 1-minute bucket and marks no span (the hourly window is then read)."""
    store, fake = UsageStore(conn), FakeUsage()
    fetch(store, fake, now, recent=False)
    assert fake.minutes() == []
    assert {width for width, *_ in fake.asked} == {"1h"}
    assert store.minutes_covered() is None
