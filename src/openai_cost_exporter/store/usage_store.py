"""Hourly token usage per project and model, in the shared state file: the history estimates are made from.

Each fetch replaces whole hours (usage of the last hours is revised as it comes in, like costs), and the history
window bounds it. Every row is priced once, when stored (genai-prices' price of the bucket's day), and kept as
integer nanodollars beside its tokens, so the figures of a cycle are SQL sums over a week of a 2,000-project
organization rather than a million rows priced again. An estimate is not money on the bill: nanodollars are
plenty, and NULL marks a model without a price (its tokens are counted, never guessed into the estimate).

Beside the hours, the 1-minute buckets of the runaway rule's recent window (`usage_minutes`: estimates only, no
tokens; figures/recent.py), with the span they cover.
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
    """CREATE TABLE IF NOT EXISTS usage_minutes (
        minute INTEGER NOT NULL, project_id TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
        batch INTEGER NOT NULL, service_tier TEXT NOT NULL, estimate_nanos INTEGER,
        PRIMARY KEY (minute, project_id, model, kind, batch, service_tier)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
)
_FETCHED_UNTIL = "fetched_until"
_MINUTES_FROM, _MINUTES_UNTIL = "minutes_from", "minutes_until"
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

    def first_hour(self) -> int | None:
        """The oldest hour with usage kept (a young organization's first hour of usage), or None."""
        (hour,) = self._conn.execute("SELECT MIN(hour) FROM usage_hours").fetchone()
        return None if hour is None else int(hour)

    def fetched_until(self) -> int | None:
        """The end (Unix seconds) of the last complete fetch, or None before the first."""
        row = self._conn.execute("SELECT value FROM usage_meta WHERE key = ?", (_FETCHED_UNTIL,)).fetchone()
        return None if row is None else int(row[0])

    def mark_fetched(self, until: int) -> None:
        with transaction(self._conn):
            self._conn.execute("INSERT OR REPLACE INTO usage_meta (key, value) VALUES (?, ?)", (_FETCHED_UNTIL, until))

    def replace_minutes(self, kind: str, minutes: Sequence[int], rows: Iterable[UsageRow], price: Price) -> None:
        """Replace the stored 1-minute rows of `kind` for these minutes (and any minute a row is on) by `rows`."""
        rows = list(rows)
        all_minutes = sorted(set(minutes) | {row.start for row in rows})
        with transaction(self._conn):
            self._conn.executemany(
                "DELETE FROM usage_minutes WHERE minute = ? AND kind = ?", ((m, kind) for m in all_minutes)
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO usage_minutes VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_minute_values(kind, row, price(row)) for row in rows],
            )

    def by_minute(self, start: int, end: int) -> dict[tuple[str, str, int], Decimal]:
        """Estimated USD per (project, model, minute) in [start, end), priced rows only."""
        cursor = self._conn.execute(
            "SELECT project_id, model, minute, SUM(estimate_nanos) FROM usage_minutes WHERE minute >= ?"
            " AND minute < ? AND estimate_nanos IS NOT NULL GROUP BY project_id, model, minute",
            (start, end),
        )
        return {(pid, model, minute): Decimal(nanos) / NANOS for pid, model, minute, nanos in cursor}

    def minutes_covered(self) -> tuple[int, int] | None:
        """[from, until): the span (Unix seconds) whose 1-minute rows were last fetched, or None before any."""
        rows = dict(
            self._conn.execute(
                "SELECT key, value FROM usage_meta WHERE key IN (?, ?)", (_MINUTES_FROM, _MINUTES_UNTIL)
            ).fetchall()
        )
        if _MINUTES_FROM not in rows or _MINUTES_UNTIL not in rows:
            return None
        return int(rows[_MINUTES_FROM]), int(rows[_MINUTES_UNTIL])

    def mark_minutes(self, start: int, until: int) -> None:
        """Say [start, until) is covered by the stored 1-minute rows; the rows before it are pruned."""
        with transaction(self._conn):
            self._conn.execute("DELETE FROM usage_minutes WHERE minute < ?", (start,))
            self._conn.executemany(
                "INSERT OR REPLACE INTO usage_meta (key, value) VALUES (?, ?)",
                ((_MINUTES_FROM, start), (_MINUTES_UNTIL, until)),
            )

    def prune(self, before: int) -> None:
        with transaction(self._conn):
            self._conn.execute("DELETE FROM usage_hours WHERE hour < ?", (before,))


def _values(kind: str, r: UsageRow, estimate: Decimal | None) -> tuple[object, ...]:
    counts = (r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests)
    return (r.start, r.project_id, r.model, kind, int(r.batch), r.service_tier or "", *counts, _nanos(estimate))


def _minute_values(kind: str, r: UsageRow, estimate: Decimal | None) -> tuple[object, ...]:
    return (r.start, r.project_id, r.model, kind, int(r.batch), r.service_tier or "", _nanos(estimate))


def _nanos(estimate: Decimal | None) -> int | None:
    return None if estimate is None else int((estimate * NANOS).to_integral_value(ROUND_HALF_EVEN))
