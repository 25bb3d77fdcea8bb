"""The collection cycle in-process, against the fake Admin API on loopback, with an injected clock."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.errors import PushError
from openai_cost_exporter.core.selfmetrics import RequestCounter, SelfMetrics
from openai_cost_exporter.export.collector import CostCollector
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.loop import run_forever, seconds_until_next
from openai_cost_exporter.rules import AlertPolicy
from openai_cost_exporter.rules.runaway import median
from openai_cost_exporter.service import CostCycle, CycleOptions
from openai_cost_exporter.sources.openai.client import AdminClient, build_http_client
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state

KEY = "sk-admin-service-test"
EVENING = dt.datetime(2026, 11, 18, 23, 50, tzinfo=dt.UTC)


class RecordingPusher:
    """Stands in for VictoriaMetrics: keeps the text of every push, or fails while `down` is set."""

    target = "recording"

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.down = False

    def push(self, registry: CollectorRegistry) -> int:
        if self.down:
            raise PushError("push to http://127.0.0.1:1/api/v1/import/prometheus failed: ConnectError")
        body = generate_latest(registry).decode()
        self.bodies.append(body)
        return len(body)

    def closed_day_samples(self) -> list[tuple[str, float, dt.datetime]]:
        """(project_id, value, time) of every timestamped sample: the final values of closed days."""
        return [
            (sample.labels["project_id"], sample.value, dt.datetime.fromtimestamp(float(sample.timestamp), dt.UTC))
            for body in self.bodies
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.timestamp is not None and family.name == "openai_daily_cost_usd"
        ]


class Harness:
    def __init__(self, tmp_path: Path, clock: FrozenClock, org: FakeOrg, api: FakeAdminAPI) -> None:
        self.clock, self.org, self.api = clock, org, api
        self.conn = open_state(tmp_path / "state.sqlite3")
        self.http = build_http_client(api.base_url, KEY)
        self.registry = CollectorRegistry()
        self.metrics = SelfMetrics(self.registry)
        self.pusher = RecordingPusher()
        self.ledger = Ledger(self.conn)
        self.requests = RequestCounter(self.metrics.count_request)
        self.cycle = CostCycle(
            source=AdminClient(self.http, on_request=self.requests),
            requests=self.requests,
            ledger=self.ledger,
            clock=clock,
            metrics=self.metrics,
            options=CycleOptions(retention_days=40),
            pusher=self.pusher,  # type: ignore[arg-type]
            live_registry=self.registry,
        )

    def close(self) -> None:
        self.http.close()
        self.conn.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(EVENING)


@pytest.fixture
def harness(tmp_path: Path, clock: FrozenClock) -> Iterator[Harness]:
    org = FakeOrg.generate(seed=3, project_count=12, clock=clock)
    with FakeAdminAPI(org, admin_key=KEY) as api:
        h = Harness(tmp_path, clock, org, api)
        yield h
        h.close()


def test_first_cycle_fetches_the_month_and_baseline_window(harness: Harness) -> None:
    """A cold cycle fetches the spend page's 30 days (which cover the baseline window and, on the 18th, the
    month so far) and pushes every closed day once."""
    report = harness.cycle.run_once()
    assert report.ok
    fetched = harness.ledger.fetched_days(dt.date(2026, 10, 1), dt.date(2026, 11, 19))
    assert min(fetched) == dt.date(2026, 10, 20) and max(fetched) == dt.date(2026, 11, 18) and len(fetched) == 30
    assert report.pushed_days == 29  # the 20th of October to the 17th of November; the 18th is today
    assert harness.ledger.unpushed_days() == [dt.date(2026, 11, 18)]  # pushed as a closed day once it closes


def test_midnight_pushes_the_day_that_just_closed(harness: Harness, clock: FrozenClock) -> None:
    """The day that closes at midnight gets its final timestamped sample, even if unchanged since 23:50."""
    harness.cycle.run_once()
    harness.pusher.bodies.clear()
    clock.current = dt.datetime(2026, 11, 19, 0, 0, 1, tzinfo=dt.UTC)
    report = harness.cycle.run_once()
    assert report.ok and report.pushed_days >= 1
    last_second = dt.datetime(2026, 11, 18, 23, 59, 59, tzinfo=dt.UTC)
    assert any(stamp == last_second for _, _, stamp in harness.pusher.closed_day_samples())


def test_a_revision_is_pushed_again_and_moves_the_baseline(harness: Harness) -> None:
    """A changed closed day inside the revision window is re-pushed a millisecond later; the baseline follows."""
    harness.cycle.run_once()
    project = next(p for p in harness.org.projects if p.daily_usd > 0 and not p.archived)
    before = harness.cycle.snapshot
    assert before is not None
    harness.pusher.bodies.clear()
    yesterday = dt.date(2026, 11, 17)
    old = harness.org.daily_total(yesterday, project.id)
    harness.org.set_cost(yesterday, project.id, project.line_items[0], Decimal("700"))
    new = harness.org.daily_total(yesterday, project.id)
    report = harness.cycle.run_once()
    assert report.pushed_days == 1
    after = harness.cycle.snapshot
    assert after is not None
    # The usual day follows the revision: the median of the last seven weekdays, as the fake now bills them.
    weekdays = [dt.date(2026, 11, d) for d in (17, 16, 13, 12, 11, 10, 9)]  # the seven weekdays before Wednesday
    assert after.usual[project.id] == median([harness.org.daily_total(d, project.id) for d in weekdays])
    assert old != new
    # The second push of the day lands a millisecond after the first (the newest sample wins in any dedup mode).
    assert (project.id, float(new), dt.datetime(2026, 11, 17, 23, 59, 59, 1000, tzinfo=dt.UTC)) in (
        harness.pusher.closed_day_samples()
    )


def test_unchanged_closed_days_are_not_pushed_again(harness: Harness) -> None:
    """A second cycle the same day re-reads the revision window but pushes no closed day that did not change."""
    harness.cycle.run_once()
    assert harness.cycle.run_once().pushed_days == 0


def test_push_failure_keeps_days_pending_until_it_works(harness: Harness) -> None:
    """With the push target down the cycle fails at 'push' only, and the next cycle delivers the days."""
    harness.pusher.down = True
    report = harness.cycle.run_once()
    assert report.failed_stages == ["push"]
    assert harness.registry.get_sample_value("openai_cost_exporter_errors_total", {"stage": "push"}) == 1
    assert len(harness.ledger.unpushed_days()) == 30  # 29 closed days, and today once it closes
    harness.pusher.down = False
    assert harness.cycle.run_once().pushed_days == 29


def test_costs_failure_keeps_the_last_snapshot(harness: Harness) -> None:
    """When the API fails, the previous figures stay on /metrics and the failure is counted by stage."""
    harness.cycle.run_once()
    kept = harness.cycle.snapshot
    harness.api.faults.update({"server_error_next": 50})
    report = harness.cycle.run_once()
    assert report.failed_stages[0] == "costs" and not report.ok
    assert harness.cycle.snapshot is kept
    assert harness.registry.get_sample_value("openai_cost_exporter_cycles_total", {"result": "failure"}) == 1


def test_names_refresh_when_an_unknown_project_appears(harness: Harness, clock: FrozenClock) -> None:
    """A project id missing from the cached names triggers one refresh; an id no refresh can name is not
    asked for again every cycle."""
    harness.cycle.run_once()
    harness.ledger.save_projects([], clock.now())  # names stay, refresh time is now
    with harness.conn:
        harness.conn.execute("DELETE FROM projects")
    counts = harness.api.request_counts
    before = counts().get("/v1/organization/projects", 0)
    harness.cycle.run_once()
    assert counts().get("/v1/organization/projects", 0) == before + 1
    harness.cycle.run_once()
    assert counts().get("/v1/organization/projects", 0) == before + 1


def test_retention_prunes_old_days(harness: Harness, clock: FrozenClock) -> None:
    """Days older than the retention leave the ledger."""
    harness.cycle.run_once()
    clock.current += dt.timedelta(days=45)
    harness.cycle.run_once()
    assert harness.ledger.fetched_days(dt.date(2026, 10, 1), dt.date(2026, 11, 20)) == {}


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (dt.datetime(2026, 11, 18, 12, tzinfo=dt.UTC), 300.0),
        (dt.datetime(2026, 11, 18, 23, 58, tzinfo=dt.UTC), 121.0),
        (dt.datetime(2026, 11, 18, 23, 59, 59, 500000, tzinfo=dt.UTC), 1.5),
    ],
)
def test_the_loop_wakes_just_after_midnight(now: dt.datetime, expected: float) -> None:
    """The wait is the interval, or until just after the next UTC midnight when that is sooner."""
    assert seconds_until_next(now, 300) == pytest.approx(expected)


def test_run_forever_returns_when_stopped(harness: Harness) -> None:
    """The loop runs a cycle, then returns as soon as the stop event is set."""
    stop = threading.Event()
    loop = threading.Thread(target=run_forever, args=(harness.cycle, harness.clock, 3600, stop))
    loop.start()
    while harness.cycle.last_attempt is None:
        loop.join(0.01)
    stop.set()
    loop.join(5)
    assert not loop.is_alive()


def test_a_failed_page_loses_no_fetched_day(harness: Harness) -> None:
    """When a later costs page fails, the days of the pages already read are still pushed by the next cycle."""
    harness.api.faults.update({"server_error_next": 0})
    calls = {"n": 0}
    original = harness.api.handle

    def third_page_fails(method: str, target: str, authorization: str | None, body: bytes):  # type: ignore[no-untyped-def]
        if "/organization/costs" in target:
            calls["n"] += 1
            if calls["n"] == 3:
                harness.api.faults.update({"server_error_next": 10})
        return original(method, target, authorization, body)

    harness.api.handle = third_page_fails  # type: ignore[method-assign]
    assert not harness.cycle.run_once().ok
    harness.api.handle = original  # type: ignore[method-assign]
    harness.api.faults.update({"server_error_next": 0})
    report = harness.cycle.run_once()
    assert report.ok and report.pushed_days == 29


def test_a_locked_state_file_fails_the_stage_not_the_loop(harness: Harness, tmp_path: Path) -> None:
    """Another writer holding the SQLite lock makes the cycle fail at a stage, counted, without an exception."""
    harness.conn.execute("PRAGMA busy_timeout = 0")
    other = sqlite3.connect(tmp_path / "state.sqlite3")
    other.execute("BEGIN EXCLUSIVE")
    try:
        report = harness.cycle.run_once()
    finally:
        other.rollback()
        other.close()
    assert not report.ok and report.failed_stages[0] == "costs"
    assert harness.registry.get_sample_value("openai_cost_exporter_errors_total", {"stage": "costs"}) == 1


def test_the_loop_survives_a_crashing_cycle(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception is logged with its traceback and counted, and the loop goes on."""
    stop = threading.Event()
    runs = {"n": 0}

    def crash(**_: object) -> None:
        runs["n"] += 1
        if runs["n"] == 2:
            stop.set()
        raise RuntimeError("a bug")

    harness.cycle.run_once = crash  # type: ignore[assignment,method-assign]
    run_forever(harness.cycle, harness.clock, 0, stop)
    assert runs["n"] == 2
    assert harness.registry.get_sample_value("openai_cost_exporter_errors_total", {"stage": "cycle"}) == 2
    assert "cycle crashed" in caplog.text


def test_a_revision_that_removes_spend_writes_zero(harness: Harness) -> None:
    """When a revision takes a project's whole spend off a closed day, that day's sample becomes 0."""
    harness.cycle.run_once()
    project = next(p for p in harness.org.projects if p.daily_usd > 0 and not p.archived)
    day = dt.date(2026, 11, 17)
    for item in project.line_items:
        harness.org.set_cost(day, project.id, item, Decimal(0))
    harness.pusher.bodies.clear()
    assert harness.cycle.run_once().pushed_days == 1
    last_second = dt.datetime(2026, 11, 17, 23, 59, 59, 1000, tzinfo=dt.UTC)  # the day's second push
    assert (project.id, 0.0, last_second) in harness.pusher.closed_day_samples()


def test_turning_api_keys_on_fetches_the_window_by_key_again(harness: Harness) -> None:
    """Days fetched by project only (the flag was off) are fetched again by key once `--api-keys` is on, so the
    cap's ranking and the month's top keys cover the whole window; then the usual revision window suffices."""
    assert harness.cycle.run_once().ok
    keyed = CostCycle(
        source=AdminClient(harness.http),
        ledger=harness.ledger,
        clock=harness.clock,
        metrics=harness.metrics,
        options=CycleOptions(retention_days=40, api_keys=True),
    )
    now = harness.clock.now()
    assert keyed.fetch_start(now) == dt.date(2026, 10, 20)  # the whole window, as on a cold start
    assert keyed.run_once().ok
    assert len(harness.ledger.key_fetched_days(dt.date(2026, 10, 1), dt.date(2026, 11, 19))) == 30
    assert keyed.fetch_start(now) == now.date() - dt.timedelta(days=2)  # the revision window only


@pytest.mark.calendar
def test_a_cycle_at_any_moment_matches_the_fakes_sums(tmp_path: Path, now: dt.datetime) -> None:
    """At every moment of the calendar (just after midnight, a month's or a year's last minutes, a leap day), one
    cycle pushes today, the month so far and every closed day of the spend page equal to the fake's billed sums, and
    leaves only today unpushed."""
    clock = FrozenClock(now)
    org = FakeOrg.generate(seed=3, project_count=12, clock=clock)
    with FakeAdminAPI(org, admin_key=KEY) as api:
        harness = Harness(tmp_path, clock, org, api)
        try:
            assert harness.cycle.run_once().ok
            harness.registry.register(CostCollector(lambda: harness.cycle.snapshot, AlertPolicy(), clock))
            text = generate_latest(harness.registry).decode()
            live = [s for f in text_string_to_metric_families(text) for s in f.samples]
            closed = harness.pusher.closed_day_samples()
            unpushed = harness.ledger.unpushed_days()
        finally:
            harness.close()
    today = now.date()
    names = {p.id for p in org.projects}
    for family, truth in (("openai_daily_cost_usd", org.daily_total), ("openai_month_to_date_cost_usd", None)):
        shown = {
            s.labels["project_id"]: s.value
            for s in live
            if s.name == family and s.timestamp is None and s.labels["project_id"] in names
        }
        want = {
            pid: float(org.month_to_date(pid) if truth is None else truth(today, pid))
            for pid in names
            if pid in shown or (org.month_to_date(pid) if truth is None else truth(today, pid))
        }
        assert shown == pytest.approx(want, rel=1e-12), family
    by_day: dict[dt.date, dict[str, float]] = {}
    for pid, value, stamp in closed:
        by_day.setdefault(stamp.date(), {})[pid] = value
    assert max(by_day) == today - dt.timedelta(days=1) and today not in by_day
    for day, shown_day in by_day.items():
        want_day = {pid: float(org.daily_total(day, pid)) for pid in shown_day if pid in names}
        assert {pid: v for pid, v in shown_day.items() if pid in names} == pytest.approx(want_day, rel=1e-12), day
    assert unpushed == [today]
