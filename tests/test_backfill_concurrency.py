"""The backfill's windows fetched side by side, and the chunked push of closed days: the same ledger and the same
samples as one after another, bounded concurrency, a failing window, Retry-After, and pushes marked only once
accepted."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
import stamina
from prometheus_client import CollectorRegistry, generate_latest

from openai_cost_exporter import backfill as backfill_module
from openai_cost_exporter.backfill import backfill, split_window
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.errors import APIUnavailable, PushError
from openai_cost_exporter.core.models import CostPage, CostRow, Project
from openai_cost_exporter.export import history
from openai_cost_exporter.export.history import push_closed_days
from openai_cost_exporter.fake.api import FakeAdminAPI, Faults
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.ingest.costs import Window, fetch_into_ledger
from openai_cost_exporter.sources.openai.client import AdminClient, build_http_client
from openai_cost_exporter.sources.openai.paging import costs_page_days
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
TODAY = NOW.date()
ONE = dt.timedelta(days=1)
KEY = "sk-admin-concurrency-test"


@pytest.fixture
def ledgers(tmp_path: Path) -> Iterator[tuple[Ledger, Ledger]]:
    """Two empty ledgers: one filled side by side, one one window after another."""
    conns = [open_state(tmp_path / "a" / "state.sqlite3"), open_state(tmp_path / "b" / "state.sqlite3")]
    yield Ledger(conns[0]), Ledger(conns[1])
    for conn in conns:
        conn.close()


def contents(ledger: Ledger, start: dt.date, end: dt.date) -> tuple[object, ...]:
    """Everything a fetch stores: totals, line items, fetched days, names and the days due for a push."""
    names = {pid: project.name for pid, project in ledger.projects().items()}
    fetched = sorted(ledger.fetched_days(start, end))
    return (
        ledger.project_totals(start, end),
        ledger.line_item_totals(start, end),
        fetched,
        names,
        ledger.unpushed_days(),
    )


class Org:
    """A CostSource of three projects with two line items a day, `limit` days a page; it records every request,
    how many run at once, and fails the request of page `fail_at` (its first day) when set."""

    def __init__(self, *, delay: float = 0.0, fail_at: dt.date | None = None, meet: int = 0) -> None:
        self.delay, self.fail_at = delay, fail_at
        self.requests: list[dt.date] = []
        self.running = self.most = 0
        self.threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._meeting = threading.Barrier(meet, timeout=5) if meet > 1 else None  # the first `meet` meet here

    def page_days(self, *, line_items: bool, api_keys: bool = False) -> int:
        """Days per costs page, as the OpenAI client pages."""
        return costs_page_days(line_items, api_keys)

    def iter_costs(
        self,
        start: dt.date,
        end: dt.date,
        *,
        line_items: bool,
        limit: int,
        project_ids: Sequence[str] = (),
        api_keys: bool = False,
    ) -> Iterator[CostPage]:
        day = start
        while day < end:
            days = tuple(d for d in (day + n * ONE for n in range(limit)) if d < end)
            self._begin(day)
            try:
                if day == self.fail_at:
                    raise APIUnavailable(f"GET /organization/costs failed after 3 attempts: HTTP 503 ({day})")
                page = CostPage(days, tuple(row for d in days for row in self.rows(d)))
            finally:
                with self._lock:
                    self.running -= 1
            yield page
            day = days[-1] + ONE

    def _begin(self, day: dt.date) -> None:
        with self._lock:
            self.requests.append(day)
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread())
            meeting, first = self._meeting, len(self.requests) <= (self._meeting.parties if self._meeting else 0)
        if meeting is not None and first:
            meeting.wait()  # broken (and raising) unless that many requests run at once
        time.sleep(self.delay)

    @staticmethod
    def rows(day: dt.date) -> list[CostRow]:
        cents = Decimal(day.toordinal() % 97)
        return [
            CostRow(day, "proj_a", "gpt-4o, input", cents / 100),
            CostRow(day, "proj_a", "gpt-4o, output", cents / 7),
            CostRow(day, "proj_b", "o3, output", Decimal("1E-9") * day.day),
            *([CostRow(day, "proj_c", "gpt-4o, input", Decimal(3))] if day.day % 3 == 0 else []),
        ]

    def list_projects(self) -> list[Project]:
        return [Project("proj_a", 'Team "A"'), Project("proj_b", "B\nB"), Project("proj_c", "Ç 🚀")]


class Recording:
    """Stands in for the push target: the text of every push accepted; fails from push number `fail_at` on."""

    target = "recording"

    def __init__(self, fail_at: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.attempts = 0
        self.fail_at = fail_at

    def push(self, registry: CollectorRegistry) -> int:
        self.attempts += 1
        if self.fail_at and self.attempts >= self.fail_at:
            raise PushError("push to http://127.0.0.1:1/api/v1/import/prometheus failed: HTTP 503: down")
        self.bodies.append(generate_latest(registry))
        return len(self.bodies[-1])


@pytest.mark.parametrize(("days", "page_days", "parts"), [(180, 1, 2), (181, 2, 4), (5, 3, 4), (1, 1, 4), (7, 7, 3)])
def test_split_windows_cover_the_days_in_whole_pages(days: int, page_days: int, parts: int) -> None:
    """The windows are consecutive, cover [start, end) exactly, are at most `parts`, and each but the last is a
    whole number of pages: side by side, the same requests as one chain."""
    start = TODAY - days * ONE
    windows = split_window(Window(start, TODAY, True, page_days), parts)
    assert windows[0].start == start and windows[-1].end == TODAY and len(windows) <= parts
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert all((w.end - w.start).days % page_days == 0 for w in windows[:-1])
    assert all(w.line_items and w.page_days == page_days for w in windows)


def test_an_empty_window_has_no_parts() -> None:
    """No days, no windows (and so no cost request)."""
    assert split_window(Window(TODAY, TODAY, False, 3), 4) == []


@pytest.mark.parametrize("windows", [1, 2, 4])
def test_side_by_side_stores_what_one_after_another_stores(
    ledgers: tuple[Ledger, Ledger], monkeypatch: pytest.MonkeyPatch, windows: int
) -> None:
    """Fetched in 1, 2 or 4 windows at once, 40 days of the fake Admin API leave the ledger exactly as one
    sequential fetch does: totals, line items, fetched days, names and days due for a push."""
    monkeypatch.setattr(backfill_module, "FETCH_WINDOWS", windows)
    org = FakeOrg.generate(seed=5, project_count=25, clock=FrozenClock(NOW))
    start = TODAY - 40 * ONE
    faults = Faults(amount_format="mixed")
    with FakeAdminAPI(org, admin_key=KEY, faults=faults) as api, build_http_client(api.base_url, KEY) as http:
        side_by_side = backfill(AdminClient(http), ledgers[0], None, start=start, end=TODAY, now=NOW, line_items=True)
        window = Window(start, TODAY, True, backfill_module.page_days(AdminClient(http), True))
        one_chain = fetch_into_ledger(AdminClient(http), ledgers[1], window, NOW, refresh_names=True)
    assert contents(ledgers[0], start, TODAY) == contents(ledgers[1], start, TODAY)
    assert side_by_side.projects == len(one_chain.spenders) > 0


def test_side_by_side_pushes_what_one_after_another_pushes(
    ledgers: tuple[Ledger, Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill in four windows pushes byte for byte the text of a backfill in one (chunks, zeros, line items)."""
    pushed = []
    for ledger, windows in zip(ledgers, [4, 1], strict=True):
        monkeypatch.setattr(backfill_module, "FETCH_WINDOWS", windows)
        target = Recording()
        result = backfill(Org(), ledger, target, start=TODAY - 30 * ONE, end=TODAY, now=NOW, line_items=True)  # type: ignore[arg-type]
        pushed.append((result.samples, target.bodies))
    assert pushed[0] == pushed[1]
    assert pushed[0][0] == 30 * 3 + sum(len(Org.rows(TODAY - n * ONE)) for n in range(1, 31))


@pytest.mark.parametrize(("windows", "pages"), [(4, 2), (3, 3), (2, 2)])
def test_requests_at_once_are_bounded(
    ledgers: tuple[Ledger, Ledger], monkeypatch: pytest.MonkeyPatch, windows: int, pages: int
) -> None:
    """As many cost requests run at once as windows and free pages allow, never more, in daemon threads (a stopped
    process must not wait for them)."""
    monkeypatch.setattr(backfill_module, "FETCH_WINDOWS", windows)
    monkeypatch.setattr(backfill_module, "PAGES_AT_ONCE", pages)
    bound = min(windows, pages)
    org = Org(delay=0.01, meet=bound)  # the first `bound` requests wait for each other: they do run at once
    backfill(org, ledgers[0], None, start=TODAY - 24 * ONE, end=TODAY, now=NOW, line_items=True)
    assert org.most == bound
    assert len(org.threads) == windows and all(thread.daemon for thread in org.threads)
    assert sorted(org.requests) == [TODAY - n * ONE for n in range(24, 0, -1)]  # one request a page, none twice


def test_a_failing_window_raises_after_the_others_stop(ledgers: tuple[Ledger, Ledger]) -> None:
    """A window whose request fails makes the backfill raise that error once the other windows have stopped; no
    request starts after it, every page received is stored, the names and the push wait for a complete fetch."""
    failing = TODAY - 5 * ONE  # the sixth page of the second of two windows of 10 days
    org = Org(delay=0.02, fail_at=failing)
    target = Recording()
    with pytest.raises(APIUnavailable, match=str(failing)):
        backfill(org, ledgers[0], target, start=TODAY - 20 * ONE, end=TODAY, now=NOW, line_items=True)  # type: ignore[arg-type]
    stored = ledgers[0].fetched_days(TODAY - 20 * ONE, TODAY)
    assert len(org.requests) < 20 and set(org.requests) - {failing} == set(stored)
    assert {TODAY - n * ONE for n in range(10, 5, -1)} <= set(stored)  # the failing window's earlier pages stay
    assert failing not in stored
    totals = ledgers[0].project_totals(TODAY - 20 * ONE, TODAY)
    assert all(set(totals[day]) == {row.project_id for row in Org.rows(day)} for day in stored)
    assert ledgers[0].projects() == {} and target.attempts == 0


def test_a_rate_limited_request_waits_its_retry_after(ledgers: tuple[Ledger, Ledger]) -> None:
    """A 429 with Retry-After: 1 (the fake's first answer) is retried by the client, in the thread that sent it,
    after the second it asks for; the backfill completes with every day stored."""
    stamina.set_testing(False)  # real waits here: the point is the wait (the conftest fixture turns it back on)
    org = FakeOrg.generate(seed=6, project_count=8, clock=FrozenClock(NOW))
    with FakeAdminAPI(org, admin_key=KEY, faults=Faults(rate_limit_next=1)) as api:
        with build_http_client(api.base_url, KEY) as http:
            started = time.monotonic()
            backfill(AdminClient(http), ledgers[0], None, start=TODAY - 6 * ONE, end=TODAY, now=NOW, line_items=True)
            waited = time.monotonic() - started
        assert api.faults_fired["rate_limit_next"] == 1
    assert waited >= 1.0
    assert sorted(ledgers[0].fetched_days(TODAY - 6 * ONE, TODAY)) == [TODAY - n * ONE for n in range(6, 0, -1)]


# ---- the chunked push -----------------------------------------------------------------------------------------


def filled(ledger: Ledger, days: int) -> list[dt.date]:
    """`days` closed days of Org's rows before TODAY in the ledger, all due for a push; oldest first."""
    span = [TODAY - n * ONE for n in range(days, 0, -1)]
    for day in span:
        ledger.replace_days([day], Org.rows(day), NOW)
    return span


def test_a_failed_chunk_leaves_it_and_the_rest_unpushed(ledgers: tuple[Ledger, Ledger]) -> None:
    """When the second chunk's push fails, the first stays marked pushed, that chunk and the later ones stay due,
    PushError is raised, and no chunk is sent after the failed one."""
    days = filled(ledgers[0], 3 * history.PUSH_CHUNK_DAYS)
    target = Recording(fail_at=2)
    with pytest.raises(PushError):
        push_closed_days(target, ledgers[0], before=TODAY, names={}, line_items=True)  # type: ignore[arg-type]
    assert target.attempts == 2 and len(target.bodies) == 1
    assert ledgers[0].unpushed_days() == days[history.PUSH_CHUNK_DAYS :]
    assert set(ledgers[0].pushed_days(days[0], TODAY, Recording.target)) == set(days[: history.PUSH_CHUNK_DAYS])


def test_pending_days_far_apart_are_read_alone(ledgers: tuple[Ledger, Ledger], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two due days a year apart are read from the ledger each on its own, never the year between them, and each
    project with spend on either gets a sample on both (0 where it had none)."""
    ledger = ledgers[0]
    old, new = TODAY - 400 * ONE, TODAY - ONE
    ledger.replace_days([old], [CostRow(old, "proj_old", "gpt-4o, input", Decimal(2))], NOW)
    ledger.replace_days([new], Org.rows(new), NOW)
    for day in (TODAY - 200 * ONE, TODAY - 100 * ONE):  # pushed already: not due, and not to be read
        ledger.replace_days([day], Org.rows(day), NOW)
        ledger.mark_pushed([day])
    asked: list[tuple[dt.date, dt.date]] = []
    reads = ledger.project_totals

    def spy(start: dt.date, end: dt.date) -> dict[dt.date, dict[str, Decimal]]:
        asked.append((start, end))
        return reads(start, end)

    monkeypatch.setattr(ledger, "project_totals", spy)
    target = Recording()
    push_closed_days(target, ledger, before=TODAY, names={}, line_items=False)  # type: ignore[arg-type]
    assert asked and all((end - start).days == 1 for start, end in asked)
    text = b"".join(target.bodies).decode()
    for pid in ("proj_old", "proj_a", "proj_b"):
        assert text.count(f'project_id="{pid}"') == 2, pid


def test_backfill_zeroes_a_project_of_an_older_due_day(ledgers: tuple[Ledger, Ledger]) -> None:
    """A day due from before the backfill's window (its push failed once) is pushed with the window, and the
    projects of either get a sample on every day pushed: the window's own spenders are not read again."""
    ledger = ledgers[0]
    old = TODAY - 30 * ONE
    ledger.replace_days([old], [CostRow(old, "proj_old", "gpt-4o, input", Decimal(2))], NOW)
    target = Recording()
    result = backfill(Org(), ledger, target, start=TODAY - 5 * ONE, end=TODAY, now=NOW, line_items=False)  # type: ignore[arg-type]
    text = b"".join(target.bodies).decode()
    daily = [line for line in text.splitlines() if line.startswith("openai_daily_cost_usd{")]
    projects = {"proj_old", "proj_a", "proj_b", "proj_c"}
    assert len(daily) == 6 * len(projects) == result.samples
    assert all(sum(f'project_id="{pid}"' in line for line in daily) == 6 for pid in projects)
    assert ledger.unpushed_days() == []
