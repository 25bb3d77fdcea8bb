"""Bringing a source into the ledger: the one fetch path of the cycle, `backfill` and `report`.

A source is anything that pages daily costs and lists project names (`CostSource`); the OpenAI Admin API client
is the one implementation today, and a second provider would implement the same Protocol. Names are fetched in
a thread alongside the cost pages (the two cursor chains are independent, so a cold fetch costs one round of
pages), and each cost page is one ledger transaction: a failure on a later page loses nothing already read.
The names thread is a daemon, not a `ThreadPoolExecutor` worker: the interpreter joins those at exit, so a
names request that hangs would keep a stopped process alive (SIGTERM must end it within seconds).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from openai_cost_exporter.core.errors import ExporterError
from openai_cost_exporter.core.models import CostPage, Project
from openai_cost_exporter.core.side_by_side import Background
from openai_cost_exporter.sources.ports import CostSource
from openai_cost_exporter.store.ledger import Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    """The UTC days [start, end) to bring in, and how."""

    start: dt.date
    end: dt.date
    line_items: bool
    page_days: int  # daily buckets per costs page
    api_keys: bool = False  # by API key too (from the key epoch on)


@dataclass
class Fetched:
    """What one fetch brought into the ledger."""

    days: list[dt.date] = field(default_factory=list)
    spenders: set[str] = field(default_factory=set)  # project ids with cost rows in the window
    names_error: ExporterError | None = None  # the names could not be refreshed (the costs still count)
    rejected: int = 0  # rows left out for an absurd or unreadable amount


def fetch_into_ledger(
    source: CostSource,
    ledger: Ledger,
    window: Window,
    now: dt.datetime,
    *,
    refresh_names: bool,
    on_page: Callable[[CostPage], None] | None = None,
) -> Fetched:
    """Fetch the window's cost pages into the ledger, and the project names alongside when asked.

    A cost failure raises (what was stored stays); a names failure is returned in `Fetched.names_error`.
    """
    fetched = Fetched()
    limit = max(1, min((window.end - window.start).days, window.page_days))
    names = Background("projects", source.list_projects) if refresh_names else None
    try:
        pages = source.iter_costs(
            window.start, window.end, line_items=window.line_items, limit=limit, api_keys=window.api_keys
        )
        for page in pages:
            store_page(ledger, page, now, fetched)
            if on_page is not None:
                on_page(page)
            del page  # stored: not held while the next page is fetched
    finally:
        if names is not None:
            names.join()  # as the pool did: no names request outlives its fetch (bar a stop, see the module)
    if names is not None:
        fetched.names_error = _save_names(ledger, names.result, now)
    return fetched


def store_page(ledger: Ledger, page: CostPage, now: dt.datetime, fetched: Fetched) -> None:
    """Store one cost page in the ledger (one transaction) and note what it brought in `fetched`."""
    ledger.replace_days(page.days, page.rows, now, by_key=page.by_key)
    fetched.days.extend(page.days)
    fetched.spenders.update(row.project_id for row in page.rows)
    fetched.rejected += page.rejected


def refresh_names(source: CostSource, ledger: Ledger, now: dt.datetime) -> ExporterError | None:
    """List the projects into the ledger now; the error, if any, is returned rather than raised."""
    return _save_names(ledger, source.list_projects, now)


def _save_names(ledger: Ledger, projects: Callable[[], list[Project]], now: dt.datetime) -> ExporterError | None:
    try:
        ledger.save_projects(projects(), now)
    except ExporterError as exc:
        return exc
    return None
