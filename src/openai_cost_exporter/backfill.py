"""History: backfill closed days into VictoriaMetrics, and gather the figures of `report`.

Both stream the costs endpoint page by page into the ledger, so memory does not grow with the number of days.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry
from rich.progress import Progress

from openai_cost_exporter.clock import Clock, SystemClock
from openai_cost_exporter.collector import HistoryCollector
from openai_cost_exporter.config import Settings
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.openai_client import AdminClient, build_http_client, costs_page_days
from openai_cost_exporter.push import Pusher
from openai_cost_exporter.report import ReportData
from openai_cost_exporter.snapshot import baseline
from openai_cost_exporter.state import open_state

log = logging.getLogger(__name__)

DAY = dt.timedelta(days=1)
#: Closed days per push: 3 days of 2,000 projects with 3 line items are ~20k samples (a week peaked at 140 MB).
PUSH_DAYS = 3


@dataclass(frozen=True, slots=True)
class BackfillResult:
    days: int
    projects: int  # projects with cost rows in the backfilled days (unattributed included)
    samples: int
    duration: float


@contextlib.contextmanager
def _ledger_and_client(settings: Settings, *, online: bool = True) -> Iterator[tuple[Ledger, AdminClient | None]]:
    # The key first: a missing key is a config error, and must not leave a new state file behind.
    key = settings.resolved_admin_key() if online else None
    conn = open_state(settings.state_file)
    try:
        if key is None:
            yield Ledger(conn), None
            return
        with build_http_client(settings.base_url, key, timeout=settings.request_timeout) as http:
            yield Ledger(conn), AdminClient(http)
    finally:
        conn.close()


def backfill_pages(
    client: AdminClient,
    ledger: Ledger,
    pusher: Pusher | None,
    *,
    start: dt.date,
    end: dt.date,
    now: dt.datetime,
    line_items: bool,
) -> BackfillResult:
    """Fetch [start, end) page by page into the ledger, then push every day from the ledger, PUSH_DAYS at a time.

    The push waits for the last page because a project must get a sample on every day of the window (0 where
    it spent nothing), and which projects spend is only known once every page has been read: pushing page by
    page left holes for projects (or unattributed spend) absent from a whole page.
    """
    started = time.perf_counter()
    days: list[dt.date] = []
    spenders: set[str] = set()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="projects") as pool:
        projects = pool.submit(client.list_projects)  # independent of the costs pages: fetched alongside
        for page in client.iter_costs(start, end, line_items=line_items, limit=costs_page_days(line_items)):
            ledger.replace_days(page.days, page.rows, now)
            days.extend(page.days)
            spenders.update(row.project_id for row in page.rows)
        ledger.save_projects(projects.result(), now)
    samples = 0
    if pusher is not None and days:
        names = {pid: project.name for pid, project in ledger.projects().items()}
        days = sorted(set(days))
        for first in range(0, len(days), PUSH_DAYS):
            chunk = days[first : first + PUSH_DAYS]
            samples += _push_days(pusher, ledger, chunk, names, spenders, line_items)
    return BackfillResult(
        days=(end - start).days,
        projects=len(spenders),
        samples=samples,
        duration=time.perf_counter() - started,
    )


def _push_days(
    pusher: Pusher,
    ledger: Ledger,
    days: list[dt.date],
    names: dict[str, str],
    spenders: set[str],
    line_items: bool,
) -> int:
    """Push the stored totals of `days` (consecutive, oldest first); return the samples pushed."""
    first, last = days[0], days[-1] + DAY
    totals = ledger.project_totals(first, last)
    items = ledger.line_item_totals(first, last) if line_items else None
    history = HistoryCollector({day: totals.get(day, {}) for day in days}, names, items, spenders)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(history)
    pusher.push(registry)
    ledger.mark_pushed(days)
    return history.sample_count


def run_backfill(settings: Settings, days: int, *, clock: Clock | None = None) -> BackfillResult:
    """`backfill --days N`: the N complete UTC days before today."""
    now = (clock or SystemClock()).now()
    today = now.date()
    with (
        _ledger_and_client(settings) as (ledger, client),
        httpx.Client(timeout=settings.request_timeout) as http,
    ):
        assert client is not None
        pusher = None
        if settings.push_url:
            pusher = Pusher(http, settings.push_url, {"job": settings.job, **settings.push_labels})
        else:
            log.warning("no --push-url: the days go to the state file only (for report --offline and baselines)")
        return backfill_pages(
            client,
            ledger,
            pusher,
            start=today - dt.timedelta(days=days),
            end=today,
            now=now,
            line_items=settings.line_items,
        )


def report_data(
    settings: Settings, days: int, *, offline: bool, progress: bool = False, clock: Clock | None = None
) -> ReportData:
    """The last `days` days (today included) per project, with the baseline of today."""
    now = (clock or SystemClock()).now()
    today = now.date()
    first = today - dt.timedelta(days=max(days - 1, settings.alerts.baseline_days))
    with _ledger_and_client(settings, online=not offline) as (ledger, client):
        if client is not None:
            _fetch_for_report(client, ledger, first, today + DAY, now, progress, settings.line_items)
        totals = ledger.project_totals(first, today + DAY)
        names = {pid: project.name for pid, project in ledger.projects().items()}
    shown = [today - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]
    projects = {pid for day in shown for pid in totals.get(day, {})}
    return ReportData(
        days=shown,
        totals={day: dict(totals.get(day, {})) for day in shown},
        names={pid: names.get(pid, pid) for pid in projects},
        baseline=baseline(totals, today, settings.alerts.baseline_days),
    )


def _fetch_for_report(
    client: AdminClient,
    ledger: Ledger,
    start: dt.date,
    end: dt.date,
    now: dt.datetime,
    progress: bool,
    line_items: bool,
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool, Progress(transient=True, disable=not progress) as bar:
        projects = pool.submit(client.list_projects)
        task = bar.add_task("fetching costs", total=(end - start).days)
        for page in client.iter_costs(start, end, line_items=line_items, limit=costs_page_days(line_items)):
            ledger.replace_days(page.days, page.rows, now)
            bar.advance(task, len(page.days))
        ledger.save_projects(projects.result(), now)
