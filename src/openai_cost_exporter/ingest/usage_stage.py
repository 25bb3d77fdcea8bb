"""The usage stage of a cycle: fetch token usage, price it, and say once when usage cannot be read.

A key without the usage scope (HTTP 403, `ScopeError`) degrades to billed figures only: one clear log line
(not one per cycle), `openai_cost_exporter_errors_total{stage="usage"}` counting, and every billed figure keeps
working. A model without a price is named once in the log (pricing.py) and counted here.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Sequence
from decimal import Decimal

from openai_cost_exporter.core.errors import ScopeError
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.core.side_by_side import Background
from openai_cost_exporter.figures.estimates import Estimates, build_estimates, fetch_usage, key_rates
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.sources.openai.client import AdminClient
from openai_cost_exporter.store.usage_store import UsageStore

log = logging.getLogger(__name__)


class UsageStage:
    """Fetches and prices usage for the cycle."""

    def __init__(
        self,
        client: AdminClient,
        store: UsageStore,
        book: PriceBook,
        metrics: SelfMetrics,
        *,
        history_days: int,
        connect: Callable[[], sqlite3.Connection] | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._book = book
        self._metrics = metrics
        self._history_days = history_days
        self._connect = connect  # a connection of its own for `begin`'s thread (SQLite serialises the writers)
        self._early: tuple[dt.datetime, Background[int]] | None = None
        self._denied = False

    def begin(self, now: dt.datetime) -> None:
        """Start the fetch of `now` in the background, beside the costs (its pages are mostly parsing, theirs
        mostly waiting); `estimate(now)` waits for it. Without `connect`, `estimate` fetches by itself."""
        if self._connect is None or (self._early is not None and not self._early[1].done()):
            return  # a fetch still under way (its cycle gave up on it) is not doubled
        connect = self._connect
        self._early = (now, Background("usage", lambda: self._fetch_with(connect(), now)))

    def _fetch_with(self, conn: sqlite3.Connection, now: dt.datetime) -> int:
        try:
            return fetch_usage(self._client, UsageStore(conn), self._book, now, history_days=self._history_days)
        finally:
            conn.close()

    def estimate(self, now: dt.datetime) -> Estimates:
        """Fetch what is new (or wait for `begin`'s fetch), then price the history window. ScopeError is said
        once, then only counted.

        Only a 403 (the key lacks the usage scope) degrades to billed figures; a 401 rejects the key for every
        endpoint, so it is an ordinary failure of the stage."""
        early, self._early = self._early, None
        try:
            if early is not None and early[0] == now:
                early[1].result()
            else:
                if early is not None:  # begun for another cycle, which never asked for it: never two at once
                    early[1].join()
                fetch_usage(self._client, self._store, self._book, now, history_days=self._history_days)
        except ScopeError as exc:
            if not self._denied:
                log.warning(
                    "usage endpoints refused (%s): estimates and the runaway alert are off, billed figures go on", exc
                )
            self._denied = True
            quiet = ScopeError(str(exc))
            quiet.reported = True  # said once above: the cycle's stage counts it and logs it at debug level only
            raise quiet from None
        self._denied = False
        estimates = build_estimates(self._store, now, history_days=self._history_days)
        self._metrics.unpriced_models.set(len(estimates.unpriced))
        return estimates

    def key_rates(self, now: dt.datetime, project_ids: Sequence[str]) -> dict[str, dict[str, Decimal]]:
        """Estimated spend of the last 60 minutes per API key of these projects (a runaway message's top keys)."""
        return key_rates(self._client, self._book, now, project_ids)
