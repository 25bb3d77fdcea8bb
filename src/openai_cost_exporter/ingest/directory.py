"""Per-project listings, fetched in the background: the API keys of the projects that spend by key, and the hard
spend limits of the organization and of every project.

Each is one request per project, so none is on the path of a cycle's figures (a 2,000-project organization would
wait minutes): the cycle asks for what is missing or older than the names' refresh interval (`DirectoryStage`),
a few daemon workers fetch it at a bounded pace (`Directory`), and the cycle stores what has arrived, at its
next stage and at its end. A key name that a message needs now is asked first (`Directory.urgent`), waited for
a few seconds at most. The workers are daemons: a listing that hangs never keeps a stopped process alive.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from openai_cost_exporter.core.clock import Clock
from openai_cost_exporter.core.errors import ExporterError, ScopeError
from openai_cost_exporter.core.models import DAY, NO_API_KEY, UNATTRIBUTED, ZERO, ApiKey, SpendLimit
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.store.directory_store import KEYS, LIMIT, DirectoryStore
from openai_cost_exporter.store.ledger import Ledger

log = logging.getLogger(__name__)

Task = tuple[str, str | None]  # (KEYS or LIMIT, project id; None: the organization's spend limit)
#: Concurrent listings, and their pace: a burst (a small organization is listed at once), then RATE a second
#: (2,000 projects' keys and limits take about 8 minutes). A failure that outlived its retries pauses them all.
WORKERS = 4
RATE = 8.0
BURST = 200
PAUSE_AFTER_FAILURE_SECONDS = 30.0
_URGENT, _BACKGROUND = 0, 1


class _Pace:
    """A token bucket shared by the workers: `take()` returns how long to wait before the next listing."""

    def __init__(self, rate: float | None, burst: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._monotonic = monotonic
        self._last = monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        if self._rate is None:
            return 0.0
        with self._lock:
            self._refill(self._rate)
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def pause(self, seconds: float) -> None:
        """No listing for `seconds` (the API is failing, or rate-limiting this key)."""
        if self._rate is None:
            return
        with self._lock:
            self._refill(self._rate)
            self._tokens = min(self._tokens, 0.0) - seconds * self._rate

    def _refill(self, rate: float) -> None:
        now = self._monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * rate)
        self._last = now


class DirectorySource(Protocol):
    """Where the listings come from (the Admin API client)."""

    def list_api_keys(self, project_id: str) -> list[ApiKey]:
        """Every API key of one project."""
        ...

    def spend_limit(self, project_id: str | None) -> SpendLimit | None:
        """The hard spend limit of the organization (None) or of a project; None when there is none."""
        ...


class KeyDirectory(Protocol):
    """Names and owners of API keys, listing the given projects' keys first if needed."""

    def key_names(self, project_ids: Collection[str], timeout: float) -> Mapping[str, ApiKey]: ...


@dataclass(frozen=True, slots=True)
class Listing:
    """What one listing brought: keys, a limit (or none), or the error it failed with."""

    task: Task
    at: dt.datetime
    keys: tuple[ApiKey, ...] = ()
    limit: SpendLimit | None = None
    error: ExporterError | None = None


class Directory:
    """A bounded pool of daemon workers that make listings and hold the results until they are taken."""

    def __init__(
        self,
        source: DirectorySource,
        clock: Clock,
        *,
        workers: int = WORKERS,
        rate: float | None = RATE,
        burst: int = BURST,
    ) -> None:
        self._source = source
        self._clock = clock
        self._workers = workers
        self._pace = _Pace(rate, burst)  # rate None: unpaced (tests, `report`)
        self._queue: queue.PriorityQueue[tuple[int, int, Task]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._lock = threading.Condition()
        self._pending: set[Task] = set()
        self._running: set[Task] = set()
        self._arrived: list[Listing] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"Directory(workers={self._workers}, pending={len(self._pending)})"

    def ask(self, tasks: Iterable[Task], *, urgent: bool = False) -> int:
        """Queue the listings not queued yet; return how many were new."""
        new = 0
        with self._lock:
            for task in tasks:
                if task in self._pending and not urgent:
                    continue
                # An urgent ask of a task queued in the background queues it again, ahead: the worker that takes
                # the second entry finds it done (or under way) and skips it.
                new += task not in self._pending
                self._pending.add(task)
                self._queue.put((_URGENT if urgent else _BACKGROUND, next(self._order), task))
        if new:
            self._start()
        return new

    def urgent(self, tasks: Collection[Task], timeout: float) -> None:
        """Ask these listings first and wait for them, `timeout` seconds at most (a message should not wait)."""
        self.ask(tasks, urgent=True)
        with self._lock:
            self._lock.wait_for(lambda: not (set(tasks) & self._pending), timeout=timeout)

    def take(self) -> list[Listing]:
        """The listings that arrived since the last call."""
        with self._lock:
            arrived, self._arrived = self._arrived, []
        return arrived

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def stop(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self._workers:
                thread = threading.Thread(target=self._work, name=f"directory-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait until nothing is pending, `timeout` seconds at most; whether nothing is."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending, timeout=timeout)

    def _work(self) -> None:
        while not self._stop.is_set():
            _, _, task = self._queue.get()
            with self._lock:
                if task not in self._pending or task in self._running:
                    continue  # a second entry of a task asked urgently after it was queued
                self._running.add(task)
            delay = self._pace.take()
            if delay > 0 and self._stop.wait(delay):
                return
            listing = self._list(task)
            if listing.error is not None and not isinstance(listing.error, ScopeError):
                self._pace.pause(PAUSE_AFTER_FAILURE_SECONDS)  # 429s or 5xx outlived the retries: ease off
            with self._lock:
                self._arrived.append(listing)
                self._pending.discard(task)
                self._running.discard(task)
                self._lock.notify_all()

    def _list(self, task: Task) -> Listing:
        kind, project_id = task
        try:
            if kind == KEYS and project_id is not None:
                keys = tuple(self._source.list_api_keys(project_id))
                return Listing(task, self._clock.now(), keys=keys)
            return Listing(task, self._clock.now(), limit=self._source.spend_limit(project_id))
        except ExporterError as exc:
            return Listing(task, self._clock.now(), error=exc)
        except Exception as exc:  # a bug must not end the worker: say it, count the listing as failed
            log.exception("listing %s of %s failed unexpectedly", kind, project_id or "the organization")
            return Listing(task, self._clock.now(), error=ExporterError(f"{type(exc).__name__}: {exc}"))


class DirectoryStage:
    """The cycle's side of the listings: store what arrived, ask for what is missing or stale."""

    def __init__(
        self,
        directory: Directory,
        store: DirectoryStore,
        metrics: SelfMetrics,
        *,
        refresh: dt.timedelta,
        api_keys: bool,
        spend_limits: bool,
    ) -> None:
        self._directory = directory
        self._store = store
        self._metrics = metrics
        self._refresh = refresh
        self._api_keys = api_keys
        self._spend_limits = spend_limits
        self._refused: set[str] = set()  # kinds the admin key may not list (403): said once
        self._spending: dict[str, set[str]] = {}  # project -> key ids spending in the window (the last refresh)

    def refresh(self, ledger: Ledger, now: dt.datetime, start: dt.date) -> None:
        """Store what arrived, then ask for the listings the figures of [start, today] need."""
        self.store_arrived()
        tasks: list[Task] = []
        if self._spend_limits:
            tasks += self._probe(LIMIT, self._stale_limits(ledger, now))
        if self._api_keys:
            tasks += self._probe(KEYS, self._stale_keys(ledger, now, start))
        asked = self._directory.ask(tasks)
        if asked:
            log.debug("%d listing(s) asked in the background", asked)

    def key_names(self, project_ids: Collection[str], timeout: float) -> dict[str, ApiKey]:
        """Every key listed so far, by id, once the keys of these projects, if never listed, were listed now and
        waited for (`timeout` seconds at most: an alert message names its keys)."""
        if self._api_keys:
            listed = self._store.listed(KEYS)
            missing = [(KEYS, pid) for pid in sorted(project_ids) if pid not in listed]
            if missing:
                self._directory.urgent(missing, timeout)
            self.store_arrived()
        return self._store.keys()

    def known_keys(self) -> dict[str, ApiKey]:
        return self._store.keys()

    def spend_limits(self) -> dict[str | None, SpendLimit]:
        """The hard spend limits listed so far (none when spend limits are off)."""
        return self._store.limits() if self._spend_limits else {}

    def finish(self, timeout: float) -> int:
        """Wait for the listings asked so far (`timeout` seconds at most), store them; return how many are left."""
        self._directory.wait(timeout)
        self.store_arrived()
        return self._directory.pending

    def store_arrived(self) -> None:
        """Store every listing that arrived; failures are counted, and said in one line per kind."""
        failed: dict[str, list[Listing]] = {}
        for listing in self._directory.take():
            kind, project_id = listing.task
            if listing.error is not None:
                failed.setdefault(kind, []).append(listing)
                if not isinstance(listing.error, ScopeError):
                    continue  # 429s or 5xx outlived the retries: asked again at the next cycle (the pool paused)
            else:
                self._refused.discard(kind)  # the key may list this kind (again)
            if kind == KEYS and project_id is not None:
                # Keys that spend but were not listed (deleted since, or the key may not list them) are kept by
                # id, so no later cycle, in this process or the next, lists the project again before its refresh.
                unlisted = self._spending.get(project_id, set()) - {key.id for key in listing.keys}
                self._store.save_keys(project_id, listing.keys, listing.at, unlisted)
            elif listing.error is not None:
                self._store.mark_listed(kind, project_id, listing.at)
            else:
                self._store.save_limit(project_id, listing.limit, listing.at)
        for kind, listings in failed.items():
            self._metrics.count_error(kind)
            self._say_failed(kind, listings)

    def _probe(self, kind: str, tasks: list[Task]) -> list[Task]:
        """All the stale listings of `kind`, or only the first while the admin key may not list it (403)."""
        return tasks[:1] if kind in self._refused else tasks

    def _say_failed(self, kind: str, listings: list[Listing]) -> None:
        first = listings[0]
        if isinstance(first.error, ScopeError):
            if kind in self._refused:
                return
            self._refused.add(kind)
        what = "API keys" if kind == KEYS else "spend limits"
        when = "at the next refresh" if isinstance(first.error, ScopeError) else "at the next cycle"
        log.warning(
            "%d listing(s) of %s failed, asked again %s (e.g. %s: %s)",
            len(listings),
            what,
            when,
            first.task[1] or "the organization",
            first.error,
        )

    def _stale_limits(self, ledger: Ledger, now: dt.datetime) -> list[Task]:
        listed = self._store.listed(LIMIT)
        # The biggest spenders of the month first: they are the ones a limit may stop soon.
        month = now.date().replace(day=1)
        spent: dict[str, Decimal] = {}
        for amounts in ledger.project_totals(month, now.date() + DAY).values():
            for pid, amount in amounts.items():
                spent[pid] = spent.get(pid, ZERO) + amount
        active = [pid for pid, project in ledger.projects().items() if not project.archived]
        scopes: list[str | None] = [None, *sorted(active, key=lambda pid: (-spent.get(pid, ZERO), pid))]
        return [(LIMIT, scope) for scope in scopes if self._stale(listed.get(scope), now)]

    def _stale_keys(self, ledger: Ledger, now: dt.datetime, start: dt.date) -> list[Task]:
        listed = self._store.listed(KEYS)
        spending: dict[str, set[str]] = {}
        for day in ledger.key_totals(start, now.date() + DAY).values():
            for (pid, key_id), amount in day.items():
                if key_id != NO_API_KEY and pid != UNATTRIBUTED and amount:  # no project to list keys of
                    spending.setdefault(pid, set()).add(key_id)
        self._spending = spending
        known = self._store.keys()  # listed keys, and those that spent but were not listed (stored by id)
        return [
            (KEYS, pid)
            for pid, keys in sorted(spending.items())
            if self._stale(listed.get(pid), now) or keys - known.keys()  # a new key: listed once more for it
        ]

    def _stale(self, listed_at: dt.datetime | None, now: dt.datetime) -> bool:
        return listed_at is None or now - listed_at >= self._refresh
