"""The collection cycle and the loop that runs it.

One cycle: fetch the days that need it (the trailing revision window, plus any day of the baseline window or of the
month that was never fetched after it closed) into the ledger, refresh project names when stale, build a new
snapshot, push it, evaluate alerts and deliver pending messages. Each stage fails on its own: one log line, one
`openai_cost_exporter_errors_total{stage}` increment, and the next stage still runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from prometheus_client import CollectorRegistry

from openai_cost_exporter.clock import Clock
from openai_cost_exporter.collector import HistoryCollector
from openai_cost_exporter.errors import ExporterError
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.models import UNATTRIBUTED, Project
from openai_cost_exporter.openai_client import AdminClient, costs_page_days
from openai_cost_exporter.push import Pusher
from openai_cost_exporter.selfmetrics import SelfMetrics
from openai_cost_exporter.snapshot import PAGE_DAYS, CostSnapshot, build_snapshot

log = logging.getLogger(__name__)

DAY = dt.timedelta(days=1)
#: Closed days per history push (each is a sample per active project, and per line item).
PUSH_CHUNK_DAYS = 7
#: Wake this long after UTC midnight, so the first cycle of a day asks for the new day.
MIDNIGHT_MARGIN = 1.0


class AlertSink(Protocol):
    def process(self, snapshot: CostSnapshot) -> Mapping[str, str]:
        """Evaluate the snapshot, notify, and return the alert state per project id (for the page)."""
        ...

    def deliver_pending(self) -> None:
        """Send messages decided earlier that are still waiting."""
        ...


@dataclass(frozen=True, slots=True)
class CycleOptions:
    line_items: bool = False
    revision_days: int = 2
    baseline_days: int = 7
    retention_days: int = 400
    backfill_days: int = 0
    projects_refresh: dt.timedelta = dt.timedelta(hours=1)


@dataclass
class CycleReport:
    """What one cycle did, for the log line and for `run --once`'s exit code."""

    failed_stages: list[str] = field(default_factory=list)
    projects: int = 0
    today_usd: Decimal = Decimal(0)
    requests: int = 0
    pushed_days: int = 0
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed_stages


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from start (inclusive) to end (exclusive)."""
    return [start + dt.timedelta(days=n) for n in range((end - start).days)]


def end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + DAY, dt.time(), dt.UTC)


class CostCycle:
    """One collection cycle, run again and again by `run_forever`."""

    def __init__(
        self,
        *,
        client: AdminClient,
        ledger: Ledger,
        clock: Clock,
        metrics: SelfMetrics,
        options: CycleOptions,
        pusher: Pusher | None = None,
        live_registry: CollectorRegistry | None = None,
        alerts: AlertSink | None = None,
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._clock = clock
        self._metrics = metrics
        self._options = options
        self._pusher = pusher
        self._live_registry = live_registry
        self._alerts = alerts
        self._unresolved: set[str] = set()  # ids a refresh could not name; asked again only at the next refresh
        self.snapshot: CostSnapshot | None = None
        self.last_attempt: dt.datetime | None = None
        self.last_success: dt.datetime | None = None

    # -- the cycle -----------------------------------------------------------------------------------------
    def run_once(self) -> CycleReport:
        started = time.perf_counter()
        requests_before = self._requests_total()
        now = self._clock.now()
        self.last_attempt = now
        report = CycleReport()
        fetched = self._stage("costs", report, lambda: self._fetch(now, report))
        if fetched:
            self._stage("snapshot", report, lambda: self._snapshot(now, report))
        if self._pusher is not None and self.snapshot is not None:
            self._stage("push", report, lambda: self._push(report))
        if self._alerts is not None and fetched and self.snapshot is not None:
            self._stage("alerts", report, self._alert)
        elif self._alerts is not None:  # no fresh figures to judge, but what was decided still goes out
            self._stage("alerts", report, self._alerts.deliver_pending)
        report.duration = time.perf_counter() - started
        report.requests = self._requests_total() - requests_before
        self._record(report)
        # Last, so the pushed self-metrics describe this very cycle (a `run --once` from cron would otherwise
        # always push a last-success time of 0). A failure here still fails the cycle and is counted.
        pushable = self._pusher is not None and self._live_registry is not None and self.snapshot is not None
        if pushable and "push" not in report.failed_stages:  # one line per outage, not two
            self._stage("push", report, self._push_live)
        self._log(report)
        return report

    def _stage(self, stage: str, report: CycleReport, action: Callable[[], object]) -> bool:
        try:
            action()
        except (ExporterError, sqlite3.Error) as exc:  # sqlite3: a locked or failing state file, say
            report.failed_stages.append(stage)
            self._metrics.count_error(stage)
            log.error("%s failed: %s", stage, exc)
            return False
        return True

    def count_crash(self) -> None:
        self._metrics.count_error("cycle")
        self._metrics.cycles.labels(result="failure").inc()

    def _record(self, report: CycleReport) -> None:
        """Self-metrics of the collection (fetch, history push, alerts); the live push follows them."""
        self._metrics.cycle_duration.set(report.duration)
        self._metrics.cycles.labels(result="success" if report.ok else "failure").inc()
        if report.ok:
            self.last_success = self._clock.now()
            self._metrics.last_success.set(self.last_success.timestamp())

    def _log(self, report: CycleReport) -> None:
        log.info(
            "cycle %s: %d projects, today $%s, %d API requests, %d closed days pushed, %.2f s%s",
            "ok" if report.ok else "FAILED",
            report.projects,
            f"{report.today_usd:,.2f}",
            report.requests,
            report.pushed_days,
            report.duration,
            f" (failed: {', '.join(report.failed_stages)})" if report.failed_stages else "",
        )

    # -- fetching --------------------------------------------------------------------------------------------
    def _fetch(self, now: dt.datetime, report: CycleReport) -> None:
        today = now.date()
        start = self.fetch_start(now)
        refresh: Future[list[Project]] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="projects") as pool:
            # Names and costs are independent: fetch them side by side (a cold cycle costs one round of pages).
            if self._names_stale(now):
                refresh = pool.submit(self._client.list_projects)
            self._fetch_costs(start, today + DAY, now)
            if refresh is not None:
                self._stage("projects", report, lambda: self._save_projects(refresh.result(), now))
        if refresh is None and self._unknown_ids(start, today):
            self._stage("projects", report, lambda: self._save_projects(self._client.list_projects(), now))
        self._ledger.prune(today - dt.timedelta(days=self._options.retention_days))

    def fetch_start(self, now: dt.datetime) -> dt.date:
        """The first day to fetch: the revision window, or earlier for days never fetched after they closed."""
        today = now.date()
        # What the figures need: the baseline window, the month so far, and the spend page's 30 days.
        history = max(self._options.baseline_days, PAGE_DAYS - 1)
        horizon = min(today - dt.timedelta(days=history), today.replace(day=1))
        if self._options.backfill_days:
            horizon = min(horizon, today - dt.timedelta(days=self._options.backfill_days))
        fetched = self._ledger.fetched_days(horizon, today)
        unsettled = [day for day in days_between(horizon, today) if day not in fetched or fetched[day] < end_of(day)]
        return min([today - dt.timedelta(days=self._options.revision_days), *unsettled])

    def _fetch_costs(self, start: dt.date, end: dt.date, now: dt.datetime) -> None:
        # Each page is one ledger transaction that also marks its changed days unpushed: a failure on a later
        # page loses nothing already read.
        # The usual window (revision days + today) is one page; a cold start pages by costs_page_days.
        page_size = max(costs_page_days(self._options.line_items), self._options.revision_days + 1)
        limit = min((end - start).days, page_size)
        for page in self._client.iter_costs(start, end, line_items=self._options.line_items, limit=limit):
            self._ledger.replace_days(page.days, page.rows, now)

    def _names_stale(self, now: dt.datetime) -> bool:
        refreshed = self._ledger.projects_refreshed_at()
        return refreshed is None or now - refreshed >= self._options.projects_refresh

    def _unknown_ids(self, start: dt.date, today: dt.date) -> set[str]:
        known = self._ledger.projects()
        seen = {pid for day in self._ledger.project_totals(start, today + DAY).values() for pid in day}
        unknown = seen - set(known) - {UNATTRIBUTED} - self._unresolved
        if unknown:
            log.info(
                "%d project id(s) without a name (e.g. %s): refreshing project names",
                len(unknown),
                min(unknown),
            )
        return unknown

    def _save_projects(self, projects: list[Project], now: dt.datetime) -> None:
        self._ledger.save_projects(projects, now)
        self._unresolved = set()
        self._metrics.projects.set(len(self._ledger.projects()))

    def _requests_total(self) -> int:
        return int(
            sum(
                sample.value
                for family in self._metrics.api_requests.collect()
                for sample in family.samples
                if sample.name.endswith("_total")
            )
        )

    # -- snapshot, push, alerts --------------------------------------------------------------------------------
    def _snapshot(self, now: dt.datetime, report: CycleReport) -> None:
        today = now.date()
        first = min(today.replace(day=1), today - dt.timedelta(days=max(self._options.baseline_days, PAGE_DAYS)))
        totals = self._ledger.project_totals(first, today + DAY)
        names = {pid: project.name for pid, project in self._ledger.projects().items()}
        self._unresolved |= {pid for day in totals.values() for pid in day} - set(names) - {UNATTRIBUTED}
        line_items = None
        if self._options.line_items:
            line_items = self._ledger.line_item_totals(today, today + DAY).get(today, {})
        snapshot = build_snapshot(now, names, totals, baseline_days=self._options.baseline_days, line_items=line_items)
        self.snapshot = snapshot
        report.projects = len(snapshot.project_ids)
        report.today_usd = snapshot.total(snapshot.today)

    def _push(self, report: CycleReport) -> None:
        assert self._pusher is not None and self.snapshot is not None
        snapshot = self.snapshot
        pending = [day for day in self._ledger.unpushed_days() if day < snapshot.day]
        if not pending:
            return
        totals = self._ledger.project_totals(pending[0], pending[-1] + DAY)
        # Every project with spend on any pending day, or in the snapshot (today, baseline window, month), gets a
        # sample on each of them (0 where none): no holes between chunks, and a revision that removed such a
        # project's spend overwrites the old value.
        active = {pid for day in pending for pid in totals.get(day, {})} | set(snapshot.project_ids)
        for chunk_start in range(0, len(pending), PUSH_CHUNK_DAYS):
            chunk = pending[chunk_start : chunk_start + PUSH_CHUNK_DAYS]
            self._push_history({day: totals.get(day, {}) for day in chunk}, snapshot, active)
            report.pushed_days += len(chunk)

    def _push_live(self) -> None:
        assert self._pusher is not None and self._live_registry is not None
        self._pusher.push(self._live_registry)

    def _push_history(
        self, totals: dict[dt.date, Mapping[str, Decimal]], snapshot: CostSnapshot, active: set[str]
    ) -> None:
        assert self._pusher is not None
        days = sorted(totals)
        line_items = None
        if self._options.line_items:
            line_items = {
                d: v for d, v in self._ledger.line_item_totals(days[0], days[-1] + DAY).items() if d in totals
            }
        history = HistoryCollector(totals, snapshot.names, line_items, active)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(history)
        self._pusher.push(registry)
        self._metrics.pushed_samples.inc(history.sample_count)
        self._ledger.mark_pushed(days)

    def _alert(self) -> None:
        assert self._alerts is not None and self.snapshot is not None
        states = self._alerts.process(self.snapshot)
        self.snapshot = dataclasses.replace(self.snapshot, alerts=dict(states))


def seconds_until_next(now: dt.datetime, interval: float) -> float:
    """Sleep until the next interval, or until just after UTC midnight when that comes first (days never mix)."""
    midnight = end_of(now.date())
    return max(0.0, min(interval, (midnight - now).total_seconds() + MIDNIGHT_MARGIN))


def run_forever(cycle: CostCycle, clock: Clock, interval: float, stop: threading.Event) -> None:
    """Run cycles until `stop` is set; a cycle's failure never ends the loop."""
    while not stop.is_set():
        try:
            cycle.run_once()
        except Exception:  # a bug must not silently end the loop of a process that keeps serving /metrics
            log.exception("cycle crashed; the next one runs as scheduled")
            cycle.count_crash()
        stop.wait(seconds_until_next(clock.now(), interval))
