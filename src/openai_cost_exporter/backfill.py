"""`backfill`: bring past days into the ledger, then push those not yet pushed.

It uses the cycle's two paths (ingest/costs.py, export/history.py). The days are split into FETCH_WINDOWS windows,
each a cursor chain of its own, fetched side by side (core/side_by_side.py) beside the names, as `fetch_into_ledger`
lists them. Pages come to the calling thread, which stores each (`costs.store_page`, one transaction). At most
PAGES_AT_ONCE pages are fetched, parsed or waiting at a time, so memory grows with the page, not with the days.

The push waits for the last page because a project must get a sample on every day of the window (0 where it
spent nothing), and which projects spend is only known once every page was read. (Sending the line items, which
need no zeros, while the fetch went on was tried: on two cores VictoriaMetrics then took the CPU the parsing
needed, and the whole took as long.) A day already pushed, and unchanged since, is not pushed again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.errors import ExporterError
from openai_cost_exporter.core.models import ApiKey, CostPage, Project, days_between
from openai_cost_exporter.core.side_by_side import Ended, SideBySide
from openai_cost_exporter.export.history import push_closed_days
from openai_cost_exporter.export.key_history import push_key_days
from openai_cost_exporter.export.push import Pusher
from openai_cost_exporter.ingest.costs import Fetched, Window, store_page
from openai_cost_exporter.sources.ports import CostSource
from openai_cost_exporter.store.ledger import Ledger

log = logging.getLogger(__name__)

#: Cost windows fetched side by side (their cursor chains are independent). With 150 ms per response, 180 days of
#: 2,000 projects with line items took 45 s in one window, 32 s in two (four, with four pages at once: 23 s, but
#: 94 MB); without latency the fetch is CPU-bound (parsing, storing) and two are as fast as one.
FETCH_WINDOWS = 2
#: Pages being fetched, parsed or waiting to be stored, at most: a request waits for a free one. A 1-day page of
#: 2,000 projects with line items is ~1.5 MB parsed, ~7 MB while its body is decoded (and the client's page
#: generator keeps that body until it is asked for the next page): with the imports, two keep a backfill < 80 MB.
PAGES_AT_ONCE = 2


@dataclass(frozen=True, slots=True)
class BackfillResult:
    days: int
    projects: int  # projects with cost rows in the backfilled days (unattributed included)
    samples: int
    duration: float


def backfill(
    source: CostSource,
    ledger: Ledger,
    pusher: Pusher | None,
    *,
    start: dt.date,
    end: dt.date,
    now: dt.datetime,
    line_items: bool,
    api_keys: bool = False,
    api_keys_top: int = defaults.API_KEYS_TOP,
    keys: Mapping[str, ApiKey] | None = None,
    repush: bool = False,
) -> BackfillResult:
    """Fetch [start, end) into the ledger, then push every day of it never pushed to this target (or changed since;
    `repush`: every day, harmless on a day's own timestamps). With `api_keys`, by key too (from the key epoch on:
    the client says once where it starts), the key series pushed first, labelled with the key names in `keys`."""
    started = time.perf_counter()
    window = Window(start, end, line_items, page_days(source, line_items, api_keys), api_keys=api_keys)
    fetched = fetch_windows(source, ledger, split_window(window, FETCH_WINDOWS), now)
    if fetched.names_error is not None:
        raise fetched.names_error
    samples = 0
    if pusher is not None:
        # A day without any spend changed nothing, yet it needs its zeros once: no holes in the graph.
        pushed = {} if repush else ledger.pushed_days(start, end, pusher.target)
        ledger.mark_unpushed(day for day in days_between(start, end) if day not in pushed)
        names = ledger.names()
        if api_keys:  # first: the project push marks the days pushed
            samples += push_key_days(pusher, ledger, before=end, names=names, keys=keys or {}, top=api_keys_top)
        samples += push_closed_days(
            pusher,
            ledger,
            before=end,
            names=names,
            also_projects=fetched.spenders,
            line_items=line_items,
            spenders_known=set(fetched.days),
        ).samples
    return BackfillResult(
        days=(end - start).days,
        projects=len(fetched.spenders),
        samples=samples,
        duration=time.perf_counter() - started,
    )


def page_days(source: CostSource, line_items: bool, api_keys: bool = False) -> int:
    """Days per costs page: half the cycle's (the source's `page_days`), as PAGES_AT_ONCE pages are held."""
    return max(1, source.page_days(line_items=line_items, api_keys=api_keys) // 2)


def split_window(window: Window, parts: int) -> list[Window]:
    """`window` cut into at most `parts` consecutive windows of whole pages: the same requests, side by side."""
    days = (window.end - window.start).days
    if days <= 0:
        return []
    per_page = max(1, min(days, window.page_days))
    pages = math.ceil(days / per_page)
    span = math.ceil(pages / max(1, min(parts, pages))) * per_page  # days per window
    cuts = [window.start + dt.timedelta(days=first) for first in range(0, days, span)]
    return [dataclasses.replace(window, start=cut, end=min(window.end, cut + dt.timedelta(days=span))) for cut in cuts]


def fetch_windows(source: CostSource, ledger: Ledger, windows: list[Window], now: dt.datetime) -> Fetched:
    """Fetch every window's cost pages side by side, and the names beside them, storing each page from here.

    As `fetch_into_ledger` with `refresh_names=True`: a cost failure raises once every worker has stopped (what
    was stored stays; no request starts after it); a names failure is returned in `Fetched.names_error`.
    """
    chains: dict[str, Callable[[], Iterator[CostPage | list[Project]]]] = {
        NAMES: lambda: iter([source.list_projects()])
    }
    for n, window in enumerate(windows):
        chains[f"costs {n + 1}"] = functools.partial(_cost_pages, source, window)
    fetch = SideBySide(chains, at_once=PAGES_AT_ONCE, unbounded=[NAMES])
    fetched = Fetched()
    projects: list[Project] | None = None
    names_error: BaseException | None = None
    failure: BaseException | None = None
    for name, item in fetch:
        if isinstance(item, CostPage):
            store_page(ledger, item, now, fetched)
            del item  # stored: not held while the next one is awaited
        elif isinstance(item, Ended):
            if name == NAMES:
                names_error = item.error
            elif item.error is not None and failure is None:
                failure = item.error
                fetch.stop()  # the other windows start no new request; pages under way are still stored
        else:
            projects = item
    if failure is not None:
        raise failure
    if isinstance(names_error, ExporterError):
        fetched.names_error = names_error
    elif names_error is not None:  # not an API failure: a bug, raised as the names thread of ingest/costs.py does
        raise names_error
    elif projects is not None:
        ledger.save_projects(projects, now)
    return fetched


NAMES = "projects"


def _cost_pages(source: CostSource, window: Window) -> Iterator[CostPage]:
    limit = max(1, min((window.end - window.start).days, window.page_days))
    return source.iter_costs(  # as fetch_into_ledger asks, keywords and all
        window.start, window.end, line_items=window.line_items, limit=limit, api_keys=window.api_keys
    )
