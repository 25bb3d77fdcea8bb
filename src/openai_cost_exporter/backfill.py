"""`backfill`: bring past days into the ledger, then push those not yet pushed.

It uses the cycle's two paths (sources.py, history.py). The days are split into FETCH_WINDOWS windows, each a
cursor chain of its own, fetched side by side in daemon threads (beside the names, as `fetch_into_ledger` lists
them); every request is the client's, with its retries and its `Retry-After` waits, in the thread that sent it.
Pages come to the calling thread, which stores each (`sources.store_page`, one transaction; the SQLite connection
never leaves that thread). At most PAGES_AT_ONCE pages are fetched, parsed or waiting at a time, so memory grows
with the page, not with the number of days.

The push waits for the last page because a project must get a sample on every day of the window (0 where it
spent nothing), and which projects spend is only known once every page was read. (Sending the line items, which
need no zeros, while the fetch went on was tried: on two cores VictoriaMetrics then took the CPU the parsing
needed, and the whole took as long.) A day already pushed, and unchanged since, is not pushed again.

The workers are daemon threads, not a `ThreadPoolExecutor`'s: the interpreter joins those at exit, so a request
that hangs would keep a stopped process alive (sources.py says the same of the names thread).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from openai_cost_exporter import defaults
from openai_cost_exporter.errors import ExporterError
from openai_cost_exporter.history import push_closed_days
from openai_cost_exporter.key_history import push_key_days
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.models import ApiKey, CostPage, Project, days_between
from openai_cost_exporter.openai_client import costs_page_days
from openai_cost_exporter.push import Pusher
from openai_cost_exporter.sources import CostSource, Fetched, Window, store_page

log = logging.getLogger(__name__)

#: Cost windows fetched side by side (their cursor chains are independent). With 150 ms per response, 180 days of
#: 2,000 projects with line items took 45 s in one window, 32 s in two (four, with four pages at once: 23 s, but
#: 94 MB); without latency the fetch is CPU-bound (parsing, storing) and two are as fast as one.
FETCH_WINDOWS = 2
#: Pages being fetched, parsed or waiting to be stored, at most: a request waits for a free one. A 1-day page of
#: 2,000 projects with line items is ~1.5 MB parsed, ~7 MB while its body is decoded (and the client's page
#: generator keeps that body until it is asked for the next page): with the imports, two keep a backfill < 80 MB.
PAGES_AT_ONCE = 2
#: Seconds a worker waits for a free page before it checks whether the fetch was abandoned.
_POLL = 0.1


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
) -> BackfillResult:
    """Fetch [start, end) into the ledger, then push every day of it never pushed (or changed since).

    With `api_keys`, by key too (from the key epoch on: the client says once where it starts), and the key series
    of the days are pushed first, labelled with the key names in `keys`."""
    started = time.perf_counter()
    window = Window(start, end, line_items, page_days(line_items, api_keys), api_keys=api_keys)
    fetched = fetch_windows(source, ledger, split_window(window, FETCH_WINDOWS), now)
    if fetched.names_error is not None:
        raise fetched.names_error
    samples = 0
    if pusher is not None:
        # A day without any spend changed nothing, yet it needs its zeros once: no holes in the graph.
        pushed = ledger.pushed_days(start, end)
        ledger.mark_unpushed(day for day in days_between(start, end) if day not in pushed)
        names = {pid: project.name for pid, project in ledger.projects().items()}
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


def page_days(line_items: bool, api_keys: bool = False) -> int:
    """Days per costs page: half the cycle's (openai_client.costs_page_days), as PAGES_AT_ONCE pages are held."""
    return max(1, costs_page_days(line_items, api_keys) // 2)


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
    shared = _Shared(queue.Queue(), threading.BoundedSemaphore(PAGES_AT_ONCE), threading.Event(), threading.Event())
    names = _Names(source, shared)
    workers: list[_Worker] = [names, *(_Costs(source, window, shared) for window in windows)]
    for worker in workers:
        worker.start()
    fetched = Fetched()
    failure: BaseException | None = None
    try:
        for item in _arrivals(shared, len(workers)):
            if isinstance(item, CostPage):
                store_page(ledger, item, now, fetched)
                shared.slots.release()
            elif item is not names and item.error is not None and failure is None:
                failure = item.error
                shared.stop.set()  # the other windows start no new request; pages under way are still stored
    finally:
        shared.abandoned.set()  # if this thread fails, no worker waits for it
        shared.stop.set()
    if failure is not None:
        raise failure
    fetched.names_error = _save_names(ledger, names, now)
    return fetched


def _arrivals(shared: _Shared, workers: int) -> Iterator[CostPage | _Worker]:
    """Pages as they come, and each worker once it ended, until every worker has."""
    while workers:
        item = shared.inbox.get()
        workers -= not isinstance(item, CostPage)
        yield item


def _save_names(ledger: Ledger, names: _Names, now: dt.datetime) -> ExporterError | None:
    if isinstance(names.error, ExporterError):
        return names.error
    if names.error is not None:  # not an API failure: a bug, raised as the names thread of sources.py does
        raise names.error
    ledger.save_projects(names.projects, now)
    return None


@dataclass(frozen=True, slots=True)
class _Shared:
    """What the workers and the storing thread share."""

    inbox: queue.Queue[CostPage | _Worker]
    slots: threading.BoundedSemaphore  # pages fetched, parsed or waiting, at most
    stop: threading.Event  # a window failed: start no new request
    abandoned: threading.Event  # the storing thread is gone: wait for nothing


class _Stopped(Exception):
    """The fetch stopped (another window failed) or was abandoned: this worker asks for no more."""


class _Worker:
    """A task in a daemon thread; it ends by putting itself in the inbox, with its error if it failed."""

    def __init__(self, name: str, shared: _Shared) -> None:
        self._name, self._shared = name, shared
        self.error: BaseException | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name=self._name, daemon=True).start()

    def _run(self) -> None:
        try:
            self.work()
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the storing thread, which raises it
            self.error = exc
        self._shared.inbox.put(self)

    def work(self) -> None:
        raise NotImplementedError


class _Names(_Worker):
    def __init__(self, source: CostSource, shared: _Shared) -> None:
        super().__init__("projects", shared)
        self._source = source
        self.projects: list[Project] = []

    def work(self) -> None:
        self.projects = self._source.list_projects()


class _Costs(_Worker):
    def __init__(self, source: CostSource, window: Window, shared: _Shared) -> None:
        super().__init__("costs", shared)
        self._source, self._window = source, window

    def work(self) -> None:
        window = self._window
        limit = max(1, min((window.end - window.start).days, window.page_days))
        pages = self._source.iter_costs(  # as fetch_into_ledger asks, keywords and all
            window.start, window.end, line_items=window.line_items, limit=limit, api_keys=window.api_keys
        )
        while True:
            self._take_slot()  # before the request: the page it brings has room
            try:
                page = next(pages)
            except StopIteration:  # the window's last page was its previous one
                self._shared.slots.release()
                return
            except BaseException:  # the slot was not used
                self._shared.slots.release()
                raise
            self._shared.inbox.put(page)  # the storing thread frees the slot

    def _take_slot(self) -> None:
        while not self._shared.slots.acquire(timeout=_POLL):
            if self._shared.abandoned.is_set():
                raise _Stopped
        if self._shared.stop.is_set():
            self._shared.slots.release()
            raise _Stopped
