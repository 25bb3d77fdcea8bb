"""The collection cycle (loop.py runs it again and again).

One cycle: fetch the days that need it (the trailing revision window, plus any day of the baseline window or of the
month that was never fetched after it closed) into the ledger, refresh project names when stale, build a new
snapshot, push it, evaluate alerts and deliver pending messages. Each stage fails on its own: one log line, one
`openai_cost_exporter_errors_total{stage}` increment, and the next stage still runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from prometheus_client import CollectorRegistry

from openai_cost_exporter.alerts.alerter import Alerter
from openai_cost_exporter.alerts.message_inputs import KEY_NAMES_WAIT_SECONDS, KeyFigures, MessageInputs, gather_inputs
from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.clock import Clock
from openai_cost_exporter.core.errors import AuthError, ExporterError, ScopeError
from openai_cost_exporter.core.models import API_KEYS_EPOCH, DAY, UNATTRIBUTED, SpendLimit, days_between, end_of
from openai_cost_exporter.core.money import usd
from openai_cost_exporter.core.selfmetrics import RequestCounter, SelfMetrics
from openai_cost_exporter.export.history import push_closed_days
from openai_cost_exporter.export.key_history import push_key_days
from openai_cost_exporter.export.push import Pusher
from openai_cost_exporter.figures.api_keys import capped, kept_keys
from openai_cost_exporter.figures.estimates import Estimates
from openai_cost_exporter.figures.snapshot import PAGE_DAYS, CostSnapshot, build_snapshot
from openai_cost_exporter.ingest.costs import Window, fetch_into_ledger, refresh_names
from openai_cost_exporter.ingest.directory import DirectoryStage
from openai_cost_exporter.ingest.usage_stage import UsageStage
from openai_cost_exporter.rules import Alert
from openai_cost_exporter.sources.ports import CostSource
from openai_cost_exporter.store.ledger import Ledger

log = logging.getLogger(__name__)

#: How old the estimates whose shape of the day the baselines use may be (a failed usage stage or two).
SHARES_MAX_AGE = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class CycleOptions:
    line_items: bool = False
    revision_days: int = defaults.REVISION_DAYS
    baseline_days: int = defaults.BASELINE_DAYS
    retention_days: int = defaults.RETENTION_DAYS
    backfill_days: int = 0
    projects_refresh: dt.timedelta = dt.timedelta(seconds=defaults.PROJECTS_REFRESH_SECONDS)
    usage: bool = False  # estimates from token usage (the settings turn it on by default)
    usage_history_days: int = defaults.USAGE_HISTORY_DAYS
    api_keys: bool = False  # costs by API key too
    api_keys_top: int = defaults.API_KEYS_TOP


@dataclass
class CycleReport:
    """What one cycle did, for the log line and for `run --once`'s exit code."""

    failed_stages: list[str] = field(default_factory=list)
    errors: dict[str, ExporterError | sqlite3.Error] = field(default_factory=dict)  # stage -> why it failed
    projects: int = 0
    today_usd: Decimal = Decimal(0)
    requests: int = 0
    listings: int = 0  # per-project listings (key names, spend limits) made in the background meanwhile
    pushed_days: int = 0
    duration: float = 0.0
    pending_messages: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed_stages


class CostCycle:
    """One collection cycle, run again and again by `run_forever`."""

    def __init__(
        self,
        *,
        source: CostSource,
        ledger: Ledger,
        clock: Clock,
        metrics: SelfMetrics,
        options: CycleOptions,
        requests: RequestCounter | None = None,
        pusher: Pusher | None = None,
        live_registry: CollectorRegistry | None = None,
        alerter: Alerter | None = None,
        usage: UsageStage | None = None,
        directory: DirectoryStage | None = None,
    ) -> None:
        self._source = source
        self._ledger = ledger
        self._clock = clock
        self._metrics = metrics
        self._options = options
        self._requests = requests or RequestCounter()
        self._pusher = pusher
        self._live_registry = live_registry
        self._alerter = alerter
        self._usage = usage
        self._directory = directory
        self.estimates: Estimates | None = None
        self._unresolved: set[str] = set()  # ids a refresh could not name; asked again only at the next refresh
        self.snapshot: CostSnapshot | None = None
        self.alert_states: Mapping[str, str] = {}  # project_id -> alert state of the last evaluation (the page)
        self.last_attempt: dt.datetime | None = None
        self.last_success: dt.datetime | None = None
        self.last_failed_stages: list[str] = []
        self.cycles_done = 0

    # -- the cycle -----------------------------------------------------------------------------------------
    def run_once(self, *, listings_wait: float = 0.0) -> CycleReport:  # the wait: DirectoryStage.refresh
        started = time.perf_counter()
        requests_before, listings_before = self._requests.total, self._requests.listings
        now = self._clock.now()
        self.last_attempt = now
        report = CycleReport()
        if self._usage is not None:  # its pages are parsed while the costs' and the projects' are awaited
            self._usage.begin(now)
        fetched = self._stage("costs", report, lambda: self._fetch(now, report))
        usage, pusher, alerter, live = self._usage, self._pusher, self._alerter, self._live_registry
        if isinstance(report.errors.get("costs"), AuthError) and not isinstance(report.errors["costs"], ScopeError):
            usage = None  # the key itself was rejected: one line says so, the usage endpoints would only repeat it
        directory = self._directory
        if fetched and directory is not None:  # listings in the background: nothing here waits for them
            start = now.date() - dt.timedelta(days=PAGE_DAYS - 1)
            self._stage("directory", report, lambda: directory.refresh(self._ledger, now, start, wait=listings_wait))
        if usage is not None:  # before the snapshot: its baselines use the usual shape of the day
            self._stage("usage", report, lambda: self._estimate(usage, now))
        if fetched:
            self._stage("snapshot", report, lambda: self._snapshot(now, report))
        snapshot = self.snapshot
        if pusher is not None and snapshot is not None:
            self._stage("push", report, lambda: self._push(pusher, snapshot, report))
        if alerter is not None:
            # The billed rules judge fresh billed figures, the runaway rule fresh estimates, each without the
            # other; with neither, nothing new is judged, but what was decided still goes out.
            judged = snapshot if fetched else None
            self._stage("alerts", report, lambda: self._alert(alerter, judged, now, report))
        if directory is not None:  # what arrived meanwhile: a `run --once` keeps every listing it made
            self._stage("directory", report, directory.store_arrived)
        report.duration = time.perf_counter() - started
        report.requests = self._requests.total - requests_before
        report.listings = self._requests.listings - listings_before
        self._record(report)
        # Last, so the pushed self-metrics describe this very cycle (a `run --once` from cron would otherwise
        # always push a last-success time of 0). A failure here still fails the cycle and is counted.
        if pusher is not None and live is not None and snapshot is not None and "push" not in report.failed_stages:
            self._stage("push", report, lambda: pusher.push(live))  # one line per outage, not two
        self.last_failed_stages = list(report.failed_stages)
        self.cycles_done += 1
        self._log(report)
        return report

    def finish_listings(self, timeout: float) -> int:
        """After a last cycle (`run --once`): wait for its background listings, `timeout` seconds at most, and store
        them; return how many are left for the next run. The cycle's figures went out before."""
        directory = self._directory
        if directory is None:
            return 0
        left: list[int] = []
        self._stage("directory", CycleReport(), lambda: left.append(directory.finish(timeout)))
        return left[0] if left else 0

    def _stage(self, stage: str, report: CycleReport, action: Callable[[], object]) -> bool:
        try:
            action()
        except (ExporterError, sqlite3.Error) as exc:  # sqlite3: a locked or failing state file, say
            self._metrics.count_error(stage)
            if isinstance(exc, ExporterError) and exc.reported:  # said once by its stage: billed figures go on
                log.debug("%s failed: %s", stage, exc)
                return False
            report.failed_stages.append(stage)
            report.errors[stage] = exc
            log.error("%s failed: %s", stage, exc)
            return False
        return True

    def count_crash(self) -> None:
        self._metrics.count_error("cycle")
        self._metrics.cycles.labels(result="failure").inc()
        self.last_failed_stages = ["cycle"]

    def _record(self, report: CycleReport) -> None:
        """Self-metrics of the collection (fetch, history push, alerts); the live push follows them."""
        self._metrics.cycle_duration.set(report.duration)
        self._metrics.cycles.labels(result="success" if report.ok else "failure").inc()
        if report.ok:
            self.last_success = self._clock.now()
            self._metrics.last_success.set(self.last_success.timestamp())

    def _log(self, report: CycleReport) -> None:
        log.info(
            "cycle %s: %d projects, today %s, %d API requests%s, %d closed days pushed, %.2f s%s",
            "ok" if report.ok else "FAILED",
            report.projects,
            usd(report.today_usd),
            report.requests,
            f" (and {report.listings} listings in the background)" if report.listings else "",
            report.pushed_days,
            report.duration,
            f" (failed: {', '.join(report.failed_stages)})" if report.failed_stages else "",
        )

    # -- fetching --------------------------------------------------------------------------------------------
    def _fetch(self, now: dt.datetime, report: CycleReport) -> None:
        today = now.date()
        start = self.fetch_start(now)
        # The usual window (revision days + today) is one page; a cold start pages as the source says.
        page_days = max(
            self._source.page_days(line_items=self._options.line_items, api_keys=self._options.api_keys),
            self._options.revision_days + 1,
        )
        window = Window(start, today + DAY, self._options.line_items, page_days, api_keys=self._options.api_keys)
        stale = self._names_stale(now)
        fetched = fetch_into_ledger(self._source, self._ledger, window, now, refresh_names=stale)
        self._metrics.rejected_rows.inc(fetched.rejected)
        if stale:
            self._names_done(fetched.names_error, report)
        elif self._unknown_ids(start, today):
            self._names_done(refresh_names(self._source, self._ledger, now), report)
        self._ledger.prune(today - dt.timedelta(days=self._options.retention_days))

    def _names_done(self, error: ExporterError | None, report: CycleReport) -> None:
        def outcome() -> None:
            if error is not None:
                raise error
            self._unresolved = set()
            self._metrics.projects.set(len(self._ledger.projects()))

        self._stage("projects", report, outcome)

    def fetch_start(self, now: dt.datetime) -> dt.date:
        """The first day to fetch: the revision window, or earlier for days never fetched after they closed."""
        today = now.date()
        # What the figures need: the baseline window, the month so far, and the spend page's 30 days.
        history = max(self._options.baseline_days, PAGE_DAYS - 1)
        horizon = min(today - dt.timedelta(days=history), today.replace(day=1))
        if self._options.backfill_days:
            horizon = min(horizon, today - dt.timedelta(days=self._options.backfill_days))
        fetched = self._ledger.fetched_days(horizon, today)
        if self._options.api_keys:  # by key too: a day fetched by project only (the flag was off) is unsettled
            by_key = self._ledger.key_fetched_days(horizon, today)
            fetched = {
                day: min(at, by_key.get(day, at))
                for day, at in fetched.items()
                if day < API_KEYS_EPOCH or day in by_key
            }
        unsettled = [day for day in days_between(horizon, today) if day not in fetched or fetched[day] < end_of(day)]
        return min([today - dt.timedelta(days=self._options.revision_days), *unsettled])

    def _names_stale(self, now: dt.datetime) -> bool:
        refreshed = self._ledger.projects_refreshed_at()
        return refreshed is None or now - refreshed >= self._options.projects_refresh

    def _unknown_ids(self, start: dt.date, today: dt.date) -> set[str]:
        known = self._ledger.projects()
        unknown = self._ledger.project_ids(start, today + DAY) - set(known) - {UNATTRIBUTED} - self._unresolved
        if unknown:
            log.info(
                "%d project id(s) without a name (e.g. %s): refreshing project names",
                len(unknown),
                min(unknown),
            )
        return unknown

    # -- snapshot, push, alerts --------------------------------------------------------------------------------
    def _snapshot(self, now: dt.datetime, report: CycleReport) -> None:
        today = now.date()
        first = min(today.replace(day=1), today - dt.timedelta(days=max(self._options.baseline_days, PAGE_DAYS)))
        totals = self._ledger.project_totals(first, today + DAY)
        names = self._ledger.names()
        self._unresolved |= {pid for day in totals.values() for pid in day} - set(names) - {UNATTRIBUTED}
        line_items = None
        if self._options.line_items:
            line_items = self._ledger.line_item_totals(today, today + DAY).get(today, {})
        shares = self._recent_shares(now)
        directory = self._directory
        keys = None
        if self._options.api_keys:
            by_key = self._ledger.key_totals(today - dt.timedelta(days=PAGE_DAYS - 1), today + DAY)
            keys = capped(by_key.get(today, {}), kept_keys(by_key, self._options.api_keys_top))
        snapshot = build_snapshot(
            now,
            names,
            totals,
            baseline_days=self._options.baseline_days,
            line_items=line_items,
            day_shares=shares,
            keys=keys,
            key_names=directory.known_keys() if directory is not None and keys is not None else None,
            spend_limits=self._live_limits(directory) if directory is not None else None,
        )
        self.snapshot = snapshot
        report.projects = len(snapshot.project_ids)
        report.today_usd = snapshot.total(snapshot.today)

    def _live_limits(self, directory: DirectoryStage) -> dict[str | None, SpendLimit]:
        """The stored hard limits of the organization and of the projects not archived since."""
        archived = {pid for pid, project in self._ledger.projects().items() if project.archived}
        return {scope: limit for scope, limit in directory.spend_limits().items() if scope not in archived}

    def _push(self, pusher: Pusher, snapshot: CostSnapshot, report: CycleReport) -> None:
        if self._options.api_keys:  # first: the project push marks the days pushed
            push_key_days(
                pusher,
                self._ledger,
                before=snapshot.day,
                names=snapshot.names,
                keys=snapshot.key_names,
                top=self._options.api_keys_top,
                on_samples=self._metrics.pushed_samples.inc,
            )
        pushed = push_closed_days(
            pusher,
            self._ledger,
            before=snapshot.day,
            names=snapshot.names,
            also_projects=snapshot.project_ids,
            line_items=self._options.line_items,
            on_samples=self._metrics.pushed_samples.inc,
        )
        report.pushed_days += pushed.days

    def _alert(self, alerter: Alerter, snapshot: CostSnapshot | None, now: dt.datetime, report: CycleReport) -> None:
        estimates = self._fresh_estimates(now=now)
        if snapshot is not None or estimates is not None:
            names = snapshot.names if snapshot is not None else self._names()
            alerter.check_policy(names)
            outcome = alerter.decide(snapshot, estimates, names, now.date())
            due = [decision.alert for decision in outcome.decisions]
            digest = snapshot is not None and alerter.digest_due(now.date())
            inputs = self._inputs(due, digest, snapshot, now)
            alerter.queue(now.date(), now, outcome, inputs, names)
            self.alert_states = alerter.states(outcome.alerts)
        report.pending_messages = alerter.deliver().pending

    def _estimate(self, usage: UsageStage, now: dt.datetime) -> None:
        # The last estimates stay (for /metrics, and the shape of the day) until fresh ones replace them; the
        # rules judge only this cycle's (`_fresh_estimates`).
        self.estimates = usage.estimate(now)

    def _fresh_estimates(self, *, now: dt.datetime) -> Estimates | None:
        return self.estimates if self.estimates is not None and self.estimates.taken_at == now else None

    def _recent_shares(self, now: dt.datetime) -> Mapping[str, Decimal] | None:
        """The usual shape of the day from estimates up to an hour old: one failed usage stage must not make the
        baseline jump from "by this hour" to a whole day and back."""
        est = self.estimates
        fresh = est is not None and est.taken_at.date() == now.date() and now - est.taken_at <= SHARES_MAX_AGE
        return est.shares if est is not None and fresh else None

    def _names(self) -> dict[str, str]:
        return self._ledger.names()

    def _inputs(self, due: list[Alert], digest: bool, snapshot: CostSnapshot | None, now: dt.datetime) -> MessageInputs:
        return gather_inputs(
            due,
            snapshot,
            day=now.date(),
            source=self._source,
            ledger=self._ledger,
            baseline_days=self._options.baseline_days,
            digest=digest,
            estimates=self._fresh_estimates(now=now),
            keys=self._key_figures(),
            now=now,
        )

    def _key_figures(self) -> KeyFigures | None:
        directory, usage = self._directory, self._usage
        if directory is None or not self._options.api_keys:
            return None
        return KeyFigures(
            names=lambda projects: directory.key_names(projects, KEY_NAMES_WAIT_SECONDS),
            rates=usage.key_rates if usage is not None else None,
        )
