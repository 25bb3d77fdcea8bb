"""Hourly token usage per project and model, in the shared state file: the history estimates are made from.

Each fetch replaces whole hours (usage of the last hours is revised as it comes in, like costs), and retention
bounds it. Counts are integers; no money is stored here (prices change, tokens do not).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from openai_cost_exporter.models import UsageRow
from openai_cost_exporter.state import transaction

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS usage_hours (
        hour INTEGER NOT NULL, project_id TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
        batch INTEGER NOT NULL, service_tier TEXT NOT NULL, input_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, requests INTEGER NOT NULL,
        PRIMARY KEY (hour, project_id, model, kind, batch, service_tier)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
)
_FETCHED_UNTIL = "fetched_until"


class UsageStore:
    """Usage buckets of one hour each, by project, model and endpoint."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        with transaction(conn):
            for statement in _SCHEMA:
                conn.execute(statement)

    def replace_hours(self, kind: str, hours: Sequence[int], rows: Iterable[UsageRow]) -> None:
        """Replace the stored rows of `kind` for these hours (and any hour a row is on) by `rows`."""
        rows = list(rows)
        all_hours = sorted(set(hours) | {row.start for row in rows})
        with transaction(self._conn):
            self._conn.executemany(
                "DELETE FROM usage_hours WHERE hour = ? AND kind = ?", ((hour, kind) for hour in all_hours)
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO usage_hours VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_values(kind, row) for row in rows],
            )

    def rows(self, start: int, end: int) -> Iterator[UsageRow]:
        """Every stored row of the hours in [start, end), streamed (a 2,000-project week is a million rows)."""
        cursor = self._conn.execute("SELECT * FROM usage_hours WHERE hour >= ? AND hour < ?", (start, end))
        return (
            UsageRow(
                start=hour,
                project_id=pid,
                model=model,
                kind=kind,
                input_tokens=inp,
                cached_input_tokens=cached,
                output_tokens=out,
                requests=requests,
                batch=bool(batch),
                service_tier=tier or None,
            )
            for hour, pid, model, kind, batch, tier, inp, cached, out, requests in cursor
        )

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


def _values(kind: str, r: UsageRow) -> tuple[object, ...]:
    counts = (r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests)
    return (r.start, r.project_id, r.model, kind, int(r.batch), r.service_tier or "", *counts)
