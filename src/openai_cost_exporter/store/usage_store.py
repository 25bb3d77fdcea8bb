"""Hourly token usage per project and model, in the shared state file: the history estimates are made from.

Each fetch replaces whole hours (usage of the last hours is revised as it comes in, like costs), and the history
window bounds it. Every row is priced once, when stored (genai-prices' price of the bucket's day), and kept as
integer nanodollars beside its tokens, so the figures of a cycle are SQL sums over a week of a 2,000-project
organization rather than a million rows priced again. An estimate is not money on the bill: nanodollars are
plenty, and NULL marks a model without a price (its tokens are counted, never guessed into the estimate).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from openai_cost_exporter.core.models import UsageRow
from openai_cost_exporter.core.transaction import transaction

NANOS = Decimal("1e9")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS usage_hours (
        hour INTEGER NOT NULL, project_id TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
        batch INTEGER NOT NULL, service_tier TEXT NOT NULL, input_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, requests INTEGER NOT NULL,
        estimate_nanos INTEGER,
        PRIMARY KEY (hour, project_id, model, kind, batch, service_tier)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
)
_FETCHED_UNTIL = "fetched_until"
Price = Callable[[UsageRow], Decimal | None]


class UsageStore:
    """Usage buckets of one hour each, by project, model and endpoint, each with its estimate."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        with transaction(conn):
            for statement in _SCHEMA:
                conn.execute(statement)

    def replace_hours(self, kind: str, hours: Sequence[int], rows: Iterable[UsageRow], price: Price) -> None:
        """Replace the stored rows of `kind` for these hours (and any hour a row is on) by `rows`, priced."""
        rows = list(rows)
        all_hours = sorted(set(hours) | {row.start for row in rows})
        with transaction(self._conn):
            self._conn.executemany(
                "DELETE FROM usage_hours WHERE hour = ? AND kind = ?", ((hour, kind) for hour in all_hours)
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO usage_hours VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_values(kind, row, price(row)) for row in rows],
            )

    def hourly(self, start: int, end: int) -> Iterator[tuple[str, dict[int, Decimal]]]:
        """Estimated USD per hour in [start, end) of each project in turn, priced rows only.

        One project's hours at a time: a week of a 2,000-project organization is ~300k hours, which held at
        once as Decimals would be most of a cycle's memory."""
        cursor = self._conn.execute(
            "SELECT project_id, hour, SUM(estimate_nanos) FROM usage_hours WHERE hour >= ? AND hour < ?"
            " AND estimate_nanos IS NOT NULL GROUP BY project_id, hour ORDER BY project_id, hour",
            (start, end),
        )
        project, hours = "", dict[int, Decimal]()
        for pid, hour, nanos in cursor:
            if pid != project:
                if hours:
                    yield project, hours
                project, hours = pid, {}
            hours[hour] = Decimal(nanos) / NANOS
        if hours:
            yield project, hours

    def by_model(self, start: int, end: int) -> dict[tuple[str, str, int], Decimal]:
        """Estimated USD per (project, model, hour) in [start, end), priced rows only."""
        cursor = self._conn.execute(
            "SELECT project_id, model, hour, SUM(estimate_nanos) FROM usage_hours WHERE hour >= ? AND hour < ?"
            " AND estimate_nanos IS NOT NULL GROUP BY project_id, model, hour",
            (start, end),
        )
        return {(pid, model, hour): Decimal(nanos) / NANOS for pid, model, hour, nanos in cursor}

    def counts(self, start: int, end: int) -> dict[tuple[str, str], tuple[int, int, int, int]]:
        """(input uncached, cached input, output, requests) per (project, model) in [start, end)."""
        cursor = self._conn.execute(
            "SELECT project_id, model, SUM(input_tokens - cached_input_tokens), SUM(cached_input_tokens),"
            " SUM(output_tokens), SUM(requests) FROM usage_hours WHERE hour >= ? AND hour < ?"
            " GROUP BY project_id, model",
            (start, end),
        )
        return {
            (pid, model): (uncached, cached, out, requests) for pid, model, uncached, cached, out, requests in cursor
        }

    def unpriced_models(self) -> frozenset[str]:
        """Models stored without a price."""
        cursor = self._conn.execute("SELECT DISTINCT model FROM usage_hours WHERE estimate_nanos IS NULL")
        return frozenset(model for (model,) in cursor)

    def hours(self, start: int, end: int) -> list[int]:
        """The hours in [start, end) that have usage, in order."""
        cursor = self._conn.execute(
            "SELECT DISTINCT hour FROM usage_hours WHERE hour >= ? AND hour < ? ORDER BY hour", (start, end)
        )
        return [hour for (hour,) in cursor]

    def fetched_until(self) -> int | None:
        """The end (Unix seconds) of the last complete fetch, or None before the first."""
        row = self._conn.execute("SELECT value FROM usage_meta WHERE key = ?", (_FETCHED_UNTIL,)).fetchone()
        return None if row is None else int(row[0])

    def mark_fetched(self, until: int) -> None:
        with transaction(self._conn):
            self._conn.execute("INSERT OR REPLACE INTO usage_meta (key, value) VALUES (?, ?)", (_FETCHED_UNTIL, until))

    def prune(self, before: int) -> None:
        with transaction(self._conn):
            self._conn.execute("DELETE FROM usage_hours WHERE hour < ?", (before,))


def _values(kind: str, r: UsageRow, estimate: Decimal | None) -> tuple[object, ...]:
    counts = (r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests)
    nanos = None if estimate is None else int((estimate * NANOS).to_integral_value(ROUND_HALF_EVEN))
    return (r.start, r.project_id, r.model, kind, int(r.batch), r.service_tier or "", *counts, nanos)
