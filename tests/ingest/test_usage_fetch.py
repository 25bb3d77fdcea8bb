"""Tests of the usage fetch: a cold week in windows side by side, a failed chain, the fetch begun beside the costs."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from openai_cost_exporter.core.errors import APIUnavailable, ScopeError
from openai_cost_exporter.core.models import UsageRow
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.figures.estimates import (
    HOUR,
    USAGE_KINDS,
    USAGE_WINDOWS,
    fetch_usage,
    hour_of,
    split_hours,
)
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.ingest.usage_stage import UsageStage
from openai_cost_exporter.sources.openai.client import USAGE_HOURS_LIMIT, AdminClient
from openai_cost_exporter.sources.openai.usage_responses import UsagePage
from openai_cost_exporter.store.state import open_state
from openai_cost_exporter.store.usage_store import UsageStore

NOW = dt.datetime(2026, 11, 25, 12, 30, tzinfo=dt.UTC)
MODEL = "gpt-4o-2024-08-06"


class FakeUsage:
    """The client's `iter_usage`: a row per hour for proj_a, `page_hours` hours a page; records every window asked
    and the thread that asked; `fail` makes the named kind raise after its first page. 1-minute requests get a
    row per minute in one page and are recorded apart (`minutes_asked`: kind, start, end, limit)."""

    def __init__(self, *, fail: str | None = None, error: Exception | None = None) -> None:
        self.asked: list[tuple[str, int, int]] = []
        self.minutes_asked: list[tuple[str, int, int, int]] = []
        self.threads: set[str] = set()
        self._fail, self._error = fail, error or APIUnavailable("GET usage failed after 4 attempts: HTTP 503")
        self._lock = threading.Lock()

    def iter_usage(
        self, kind: str, start: int, end: int, *, width: str = "1h", limit: int = USAGE_HOURS_LIMIT
    ) -> Iterator[UsagePage]:
        if width == "1m":
            return self._minutes(kind, start, end, limit)
        return self._hours(kind, start, end)

    def _minutes(self, kind: str, start: int, end: int, limit: int) -> Iterator[UsagePage]:
        with self._lock:
            self.minutes_asked.append((kind, start, end, limit))
        minutes = tuple(range(start, end, 60))
        yield UsagePage(buckets=minutes, rows=tuple(UsageRow(m, "proj_a", MODEL, kind, 100, 0, 1, 1) for m in minutes))

    def _hours(self, kind: str, start: int, end: int) -> Iterator[UsagePage]:
        with self._lock:
            self.asked.append((kind, start, end))
            self.threads.add(threading.current_thread().name)
        for first in range(start, end, USAGE_HOURS_LIMIT * HOUR):
            hours = tuple(range(first, min(end, first + USAGE_HOURS_LIMIT * HOUR), HOUR))
            rows = tuple(UsageRow(h, "proj_a", MODEL, kind, 1000, 0, 10, 1) for h in hours)
            yield UsagePage(buckets=hours, rows=rows)
            if kind == self._fail:
                raise self._error


def client(fake: FakeUsage) -> AdminClient:
    return cast(AdminClient, fake)  # fetch_usage only calls iter_usage


def stored_hours(conn: sqlite3.Connection, kind: str) -> list[int]:
    return [h for (h,) in conn.execute("SELECT hour FROM usage_hours WHERE kind = ? ORDER BY hour", (kind,))]


@pytest.mark.parametrize(
    ("hours", "parts", "page", "expected"),
    [
        (168, 2, 6, [(0, 84), (84, 168)]),  # a week: two windows of 14 pages
        (170, 2, 6, [(0, 90), (90, 170)]),  # 29 pages: whole pages, the last window shorter
        (2, 2, 6, [(0, 2)]),  # a warm cycle's two hours: one page, one window
        (7, 3, 6, [(0, 6), (6, 7)]),
    ],
)
def test_split_hours_cuts_whole_pages(hours: int, parts: int, page: int, expected: list[tuple[int, int]]) -> None:
    """A span is cut into at most `parts` windows of whole pages that cover it once, in order."""
    assert split_hours(0, hours * HOUR, parts, page) == [(a * HOUR, b * HOUR) for a, b in expected]


def test_a_cold_week_comes_in_windows_side_by_side_and_every_hour_once(tmp_path: Path) -> None:
    """A cold start asks each endpoint's week and the hour before it (where the usual's oldest 60 minutes begin) in
    USAGE_WINDOWS windows, each from a thread of its own, and stores every hour of it exactly once per endpoint;
    the store is then marked fetched up to the current hour."""
    conn = open_state(tmp_path / "state.sqlite3")
    store, fake = UsageStore(conn), FakeUsage()
    pages = fetch_usage(client(fake), store, PriceBook(), NOW, history_days=7)
    current = hour_of(NOW)
    start, end = current - 7 * 24 * HOUR - HOUR, int(NOW.timestamp()) + 1
    for kind in USAGE_KINDS:
        windows = sorted((a, b) for k, a, b in fake.asked if k == kind)
        assert len(windows) == USAGE_WINDOWS
        assert windows[0][0] == start and windows[-1][1] == end
        assert all(left[1] == right[0] for left, right in itertools.pairwise(windows))
        assert stored_hours(conn, kind) == list(range(start, current + HOUR, HOUR))
    assert len(fake.threads) == len(USAGE_KINDS) * USAGE_WINDOWS
    assert threading.current_thread().name not in fake.threads
    minutes = len(USAGE_KINDS)  # and one page of the recent window's minutes per endpoint
    assert pages == len(USAGE_KINDS) * -(-(7 * 24 + 2) // USAGE_HOURS_LIMIT) + minutes
    assert store.fetched_until() == current
    conn.close()


def test_a_warm_cycle_asks_each_endpoint_once(tmp_path: Path) -> None:
    """After a fetch, the next cycle asks one window per endpoint: from the last complete hour."""
    conn = open_state(tmp_path / "state.sqlite3")
    store = UsageStore(conn)
    fetch_usage(client(FakeUsage()), store, PriceBook(), NOW, history_days=7)
    warm = FakeUsage()
    fetch_usage(client(warm), store, PriceBook(), NOW + dt.timedelta(minutes=5), history_days=7)
    current = hour_of(NOW)
    assert sorted(warm.asked) == [(kind, current - HOUR, int(NOW.timestamp()) + 301) for kind in sorted(USAGE_KINDS)]
    conn.close()


def test_a_failed_chain_raises_keeps_what_was_stored_and_marks_nothing(tmp_path: Path) -> None:
    """One endpoint failing raises its error once every chain has ended; the pages stored before stay, and the
    store is not marked fetched, so the next cycle asks the whole window again."""
    conn = open_state(tmp_path / "state.sqlite3")
    store = UsageStore(conn)
    with pytest.raises(APIUnavailable, match="HTTP 503"):
        fetch_usage(client(FakeUsage(fail="embeddings")), store, PriceBook(), NOW, history_days=7)
    assert store.fetched_until() is None
    assert 0 < len(stored_hours(conn, "embeddings")) <= USAGE_WINDOWS * USAGE_HOURS_LIMIT
    assert stored_hours(conn, "completions")  # the other endpoint's pages under way were stored
    conn.close()


def stage(fake: FakeUsage, conn: sqlite3.Connection, connects: list[str], path: Path) -> UsageStage:
    def connect() -> sqlite3.Connection:
        connects.append(threading.current_thread().name)
        return open_state(path)

    metrics = SelfMetrics(CollectorRegistry())
    return UsageStage(client(fake), UsageStore(conn), PriceBook(), metrics, history_days=7, connect=connect)


def test_begin_fetches_in_the_background_with_a_connection_of_its_own(tmp_path: Path) -> None:
    """`begin(now)` fetches from a thread of its own on its own connection; `estimate(now)` waits for it and reads
    what it stored through the cycle's connection."""
    path = tmp_path / "state.sqlite3"
    conn, fake, connects = open_state(path), FakeUsage(), list[str]()
    usage = stage(fake, conn, connects, path)
    usage.begin(NOW)
    estimates = usage.estimate(NOW)
    assert connects == ["usage"]
    assert "usage" not in fake.threads and threading.current_thread().name not in fake.threads
    assert estimates.today[("proj_a", MODEL)] > 0
    assert UsageStore(conn).fetched_until() == hour_of(NOW)
    conn.close()


def test_without_begin_for_this_moment_estimate_fetches_itself(tmp_path: Path) -> None:
    """A fetch begun for another moment is not taken for this one: `estimate` waits for it to end (never two
    fetches at once), then fetches from the last complete hour on the cycle's connection."""
    path = tmp_path / "state.sqlite3"
    conn, fake, connects = open_state(path), FakeUsage(), list[str]()
    usage = stage(fake, conn, connects, path)
    usage.begin(NOW - dt.timedelta(minutes=5))
    usage.estimate(NOW)
    assert len(connects) == 1  # the begun one only
    current = hour_of(NOW)
    assert sorted(a for a in fake.asked if a[2] == int(NOW.timestamp()) + 1) == [
        (kind, current - HOUR, int(NOW.timestamp()) + 1) for kind in sorted(USAGE_KINDS)
    ]
    conn.close()


def test_a_missing_scope_in_the_background_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 403 met by the begun fetch degrades like one met inline: one warning, then quiet failures."""
    path = tmp_path / "state.sqlite3"
    conn = open_state(path)
    fake = FakeUsage(fail="completions", error=ScopeError("HTTP 403: Missing scopes: api.usage.read"))
    usage = stage(fake, conn, [], path)
    for minute in (0, 5):
        moment = NOW + dt.timedelta(minutes=minute)
        usage.begin(moment)
        with pytest.raises(ScopeError) as caught:
            usage.estimate(moment)
        assert getattr(caught.value, "reported", False)
    assert sum("usage endpoints refused" in r.getMessage() for r in caplog.records) == 1
    conn.close()


def test_rows_priced_in_the_background_match_rows_priced_inline(tmp_path: Path) -> None:
    """The begun fetch stores the same priced rows as an inline one."""
    inline_conn = open_state(tmp_path / "inline.sqlite3")
    fetch_usage(client(FakeUsage()), UsageStore(inline_conn), PriceBook(), NOW, history_days=7)
    path = tmp_path / "state.sqlite3"
    conn = open_state(path)
    usage = stage(FakeUsage(), conn, [], path)
    usage.begin(NOW)
    usage.estimate(NOW)
    query = "SELECT hour, kind, estimate_nanos FROM usage_hours ORDER BY hour, kind"
    rows: Sequence[tuple[int, str, int]] = conn.execute(query).fetchall()
    assert rows == inline_conn.execute(query).fetchall()
    assert all(nanos > 0 for _, _, nanos in rows)
    inline_conn.close()
    conn.close()
