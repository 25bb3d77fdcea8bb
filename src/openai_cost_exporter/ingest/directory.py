"""Per-project listings, fetched in the background: the API keys of the projects that spend by key, and the hard
spend limits of the organization and of every project.

Each is one request per project, so none is on the path of a cycle's figures (a 2,000-project organization would
wait minutes): the cycle asks for what is missing or older than the names' refresh interval (`DirectoryStage`),
a few daemon workers fetch it at a bounded pace (`Directory`, ingest/listings.py), and the cycle stores what has
arrived, at its next stage and at its end. A key name that a message needs now is asked first
(`Directory.urgent`), waited for a few seconds at most. The workers are daemons: a listing that hangs never keeps
a stopped process alive.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection
from decimal import Decimal

from openai_cost_exporter.core.errors import ScopeError
from openai_cost_exporter.core.models import DAY, NO_API_KEY, UNATTRIBUTED, ZERO, ApiKey, SpendLimit
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.ingest.listings import Directory, DirectorySource, KeyDirectory, Listing, Task
from openai_cost_exporter.store.directory_store import KEYS, LIMIT, DirectoryStore
from openai_cost_exporter.store.ledger import Ledger

log = logging.getLogger(__name__)

__all__ = ["Directory", "DirectorySource", "DirectoryStage", "KeyDirectory", "Listing", "Task"]


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

    def refresh(self, ledger: Ledger, now: dt.datetime, start: dt.date, *, wait: float = 0.0) -> None:
        """Store what arrived, then ask for the listings the figures of [start, today] need. With `wait` (`run
        --once`, a daemon's first cycle) those never made are waited for, that long at most, and stored: the push
        carries the keys' names and the alerts judge the limits, rather than leaving both to a next run."""
        self.store_arrived()
        tasks: list[Task] = []
        if self._spend_limits:
            tasks += self._probe(LIMIT, self._stale_limits(ledger, now))
        if self._api_keys:
            tasks += self._probe(KEYS, self._stale_keys(ledger, now, start))
        if asked := self._directory.ask(tasks):
            log.debug("%d listing(s) asked in the background", asked)
        if wait > 0 and (first := self._first_time(tasks)):  # not a refresh of what is known: that goes on behind
            self._directory.urgent(first, wait)
            self.store_arrived()

    def _first_time(self, tasks: list[Task]) -> list[Task]:
        """The tasks a figure lacks: a scope never listed, a project with a key not known yet."""
        listed, known = {kind: self._store.listed(kind) for kind in (KEYS, LIMIT)}, self._store.keys()
        return [
            (kind, pid)
            for kind, pid in tasks
            if pid not in listed[kind]
            or (kind == KEYS and pid is not None and self._spending.get(pid, set()) - known.keys())
        ]

    def key_names(self, project_ids: Collection[str], timeout: float) -> dict[str, ApiKey]:
        """Every key listed so far, by id, once the keys of these projects, if never listed, were listed now and
        waited for (`timeout` seconds at most: an alert message names its keys)."""
        if self._api_keys:
            self.store_arrived()  # a listing that arrived but is not stored yet is not asked twice
            listed = self._store.listed(KEYS)
            missing = [(KEYS, pid) for pid in sorted(project_ids) if pid not in listed]
            if missing:
                self._directory.urgent(missing, timeout)
            self.store_arrived()
        return self._store.keys()

    def known_keys(self) -> dict[str, ApiKey]:
        """The keys listed so far, by id; while the admin key may not list keys (403), every key seen spending too,
        named by its id (their names will not come: `/metrics` holds back only keys whose names are on the way)."""
        keys = self._store.keys()
        if KEYS in self._refused:
            for key_id in {k for ids in self._spending.values() for k in ids} - keys.keys():
                keys[key_id] = ApiKey(key_id, key_id, "", "")
        return keys

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
