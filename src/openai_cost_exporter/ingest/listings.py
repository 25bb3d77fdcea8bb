"""The pool that makes the per-project listings (API keys, hard spend limits) in the background: a few daemon
workers at a bounded pace, results held until the cycle takes them (ingest/directory.py `DirectoryStage`).
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
from typing import Protocol

from openai_cost_exporter.core.clock import Clock
from openai_cost_exporter.core.errors import ExporterError, ScopeError
from openai_cost_exporter.core.models import ApiKey, SpendLimit
from openai_cost_exporter.store.directory_store import KEYS

log = logging.getLogger("openai_cost_exporter.ingest.directory")  # one logger for the listings, pool and stage

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
                # Urgent: queued again, ahead; the worker taking the second entry finds it done or under way.
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
        return len(self._pending)  # a set's len is atomic

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
