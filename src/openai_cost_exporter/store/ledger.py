"""The cost ledger: daily costs per project and line item (and per API key), project names, days awaiting a push.

Amounts are stored as TEXT holding the exact `Decimal` the API sent (it sends strings such as `"0E-6176"` and
39-digit decimals, openai-admin-api.md §7.1) and are summed in Python, never with SQL `SUM` over floats.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from decimal import Decimal, localcontext

from openai_cost_exporter.core.models import NO_API_KEY, CostRow, Project
from openai_cost_exporter.core.money import MONEY_CONTEXT, exact_sum
from openai_cost_exporter.core.transaction import transaction
from openai_cost_exporter.store.push_marks import PushMarks

log = logging.getLogger(__name__)

#: Line item under which ungrouped rows (line_item None) are stored.
UNGROUPED = ""

_SCHEMA = (
    # The primary key's leading column is `day`, so it is also the index every range query and delete uses.
    """CREATE TABLE IF NOT EXISTS cost_rows (
        day TEXT NOT NULL, project_id TEXT NOT NULL, line_item TEXT NOT NULL, amount_usd TEXT NOT NULL,
        PRIMARY KEY (day, project_id, line_item)) WITHOUT ROWID""",
    # Per API key, summed over line items; only for days fetched by key (`--api-keys`). api_key_id NO_API_KEY is
    # spend outside keys. The same rows as cost_rows, summed the other way: a project's keys add up to it exactly.
    """CREATE TABLE IF NOT EXISTS key_cost_rows (
        day TEXT NOT NULL, project_id TEXT NOT NULL, api_key_id TEXT NOT NULL, amount_usd TEXT NOT NULL,
        PRIMARY KEY (day, project_id, api_key_id)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS fetched_days (day TEXT PRIMARY KEY, fetched_at TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS key_fetched_days (day TEXT PRIMARY KEY, fetched_at TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS projects (
        project_id TEXT PRIMARY KEY, name TEXT NOT NULL, archived INTEGER NOT NULL) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS unpushed_days (day TEXT PRIMARY KEY) WITHOUT ROWID",
    # Before 0.5, days pushed to the one push target; the first target that asks adopts them (`pushed_to`).
    "CREATE TABLE IF NOT EXISTS pushed_days (day TEXT PRIMARY KEY, pushes INTEGER NOT NULL) WITHOUT ROWID",
    # Days whose final totals reached a push target (export/push.py `push_target`) at least once, and how often
    # (revisions included): a new VictoriaMetrics has none of them.
    """CREATE TABLE IF NOT EXISTS pushed_to (
        target TEXT NOT NULL, day TEXT NOT NULL, pushes INTEGER NOT NULL, PRIMARY KEY (target, day)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)
_PROJECTS_REFRESHED = "projects_refreshed_at"

_Key = tuple[str, str]  # (project_id, line_item)
_DayContent = dict[_Key, Decimal]


class Ledger(PushMarks):
    """History of daily costs, project names and unpushed days, in the shared state connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        with transaction(conn):
            for statement in _SCHEMA:
                conn.execute(statement)

    def replace_days(
        self, days: Sequence[dt.date], rows: Iterable[CostRow], fetched_at: dt.datetime, *, by_key: bool = False
    ) -> set[dt.date]:
        """Replace all stored rows of `days` (and of any day a row is on) by `rows`; return the changed days.

        A day changed when a project total or a line item amount differs from what was stored (or, for rows
        `by_key`, an API key's amount); a day never fetched before counts as stored empty, and a zero amount
        counts as absent. Changed days are marked unpushed in the same transaction, whoever fetched them (a
        cycle, `backfill`, `report`), so their final values reach VictoriaMetrics once they are closed, even
        after a crash or a failed page in between.

        Rows not `by_key` keep a day's key figures while its project figures are unchanged (a `report` or a
        fallback by project must not erase them); when they changed, the key figures are dropped with the day's
        by-key mark, so a cycle with `--api-keys` fetches the day by key again (`key_fetched_days`).
        """
        rows = list(rows)
        new = _aggregate(rows)
        keyed = _aggregate_keys(rows) if by_key else {}
        all_days = sorted(set(days) | new.keys())
        if not all_days:
            return set()
        start, end = all_days[0], all_days[-1] + dt.timedelta(days=1)
        with transaction(self._conn):
            old = self._contents(start, end)
            old_keys = self._key_contents(start, end)
            changed = {day for day in all_days if _differs(old.get(day, {}), new.get(day, {}))}
            if by_key:
                changed |= {day for day in all_days if _differs(old_keys.get(day, {}), keyed.get(day, {}))}
            for day in all_days:
                # Value-identical days (the usual re-fetch) are not rewritten: that keeps a re-fetch cheap.
                if old.get(day, {}) != new.get(day, {}):
                    self._write("cost_rows", "line_item", day, new.get(day, {}))
                if by_key and old_keys.get(day, {}) != keyed.get(day, {}):
                    self._write("key_cost_rows", "api_key_id", day, keyed.get(day, {}))
            if not by_key:  # stale key figures go, with their mark; unchanged days keep both
                stale = [(day.isoformat(),) for day in all_days if day in changed]
                self._conn.executemany("DELETE FROM key_cost_rows WHERE day = ?", stale)
                self._conn.executemany("DELETE FROM key_fetched_days WHERE day = ?", stale)
            self._conn.executemany(
                "INSERT OR REPLACE INTO fetched_days (day, fetched_at) VALUES (?, ?)",
                ((day.isoformat(), fetched_at.isoformat()) for day in all_days),
            )
            if by_key:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO key_fetched_days (day, fetched_at) VALUES (?, ?)",
                    ((day.isoformat(), fetched_at.isoformat()) for day in all_days),
                )
            self._conn.executemany(
                "INSERT OR IGNORE INTO unpushed_days (day) VALUES (?)", ((day.isoformat(),) for day in changed)
            )
        log.debug("ledger replaced %s days, %s changed", len(all_days), len(changed))
        return changed

    def key_fetched_days(self, start: dt.date, end: dt.date) -> dict[dt.date, dt.datetime]:
        """Per day in [start, end) whose key figures are stored: when it was last fetched by key."""
        cursor = self._conn.execute(
            "SELECT day, fetched_at FROM key_fetched_days WHERE day >= ? AND day < ?",
            (start.isoformat(), end.isoformat()),
        )
        return {dt.date.fromisoformat(day): dt.datetime.fromisoformat(at) for day, at in cursor}

    def key_totals(self, start: dt.date, end: dt.date) -> dict[dt.date, dict[tuple[str, str], Decimal]]:
        """Per day in [start, end) fetched by key, per (project_id, api_key_id): the amount over line items."""
        return self._key_contents(start, end)

    def project_totals(self, start: dt.date, end: dt.date) -> dict[dt.date, dict[str, Decimal]]:
        """Per day in [start, end), per project_id: the sum over its line items; days without rows absent.

        Summed as the rows stream from SQLite (a month of line items is ~200k rows for 2,000 projects: never
        held at once), each project id kept once for all its days."""
        cursor = self._conn.execute(
            "SELECT day, project_id, amount_usd FROM cost_rows WHERE day >= ? AND day < ?",
            (start.isoformat(), end.isoformat()),
        )
        totals: dict[dt.date, dict[str, Decimal]] = {}
        ids: dict[str, str] = {}
        last_day, per_project = "", {}
        with localcontext(MONEY_CONTEXT):
            for day, raw_id, text in cursor:
                if day != last_day:  # rows come in primary-key order, grouped by day
                    per_project = totals.setdefault(dt.date.fromisoformat(day), {})
                    last_day = day
                project_id = ids.setdefault(raw_id, raw_id)
                amount = Decimal(text)
                previous = per_project.get(project_id)
                if previous is None or not previous:
                    per_project[project_id] = amount
                elif amount:  # as in exact_sum: adding 0E-6176 would pad the total with zeros
                    per_project[project_id] = previous + amount
        return totals

    def project_ids(self, start: dt.date, end: dt.date) -> set[str]:
        """The project ids with cost rows on a day in [start, end): the keys of `project_totals`, without sums."""
        cursor = self._conn.execute(
            "SELECT DISTINCT project_id FROM cost_rows WHERE day >= ? AND day < ?", (start.isoformat(), end.isoformat())
        )
        return {pid for (pid,) in cursor}

    def line_item_totals(self, start: dt.date, end: dt.date) -> dict[dt.date, dict[tuple[str, str], Decimal]]:
        """Per day in [start, end), per (project_id, line_item): the amount; ungrouped rows are left out."""
        items: dict[dt.date, dict[tuple[str, str], Decimal]] = {}
        for day, content in self._contents(start, end).items():
            real = {key: amount for key, amount in content.items() if key[1] != UNGROUPED}
            if real:
                items[day] = real
        return items

    def fetched_days(self, start: dt.date, end: dt.date) -> dict[dt.date, dt.datetime]:
        """Per day in [start, end) that was ever fetched: when it was fetched last."""
        cursor = self._conn.execute(
            "SELECT day, fetched_at FROM fetched_days WHERE day >= ? AND day < ?",
            (start.isoformat(), end.isoformat()),
        )
        return {dt.date.fromisoformat(day): dt.datetime.fromisoformat(at) for day, at in cursor}

    def prune(self, before: dt.date) -> int:
        """Forget days before `before`: cost rows, fetched marks, push marks; return the cost rows deleted."""
        cutoff = (before.isoformat(),)
        with transaction(self._conn):
            deleted = self._conn.execute("DELETE FROM cost_rows WHERE day < ?", cutoff).rowcount
            self._conn.execute("DELETE FROM key_cost_rows WHERE day < ?", cutoff)
            self._conn.execute("DELETE FROM key_fetched_days WHERE day < ?", cutoff)
            self._conn.execute("DELETE FROM fetched_days WHERE day < ?", cutoff)
            # Nothing is left to push for a pruned day; pushing it would overwrite real history with zeros.
            self._conn.execute("DELETE FROM unpushed_days WHERE day < ?", cutoff)
            self._conn.execute("DELETE FROM pushed_days WHERE day < ?", cutoff)
            self._conn.execute("DELETE FROM pushed_to WHERE day < ?", cutoff)
        return deleted

    def save_projects(self, projects: Iterable[Project], refreshed_at: dt.datetime) -> None:
        """Upsert these projects (others stay, so deleted projects keep their names) and the refresh time."""
        with transaction(self._conn):
            self._conn.executemany(
                "INSERT OR REPLACE INTO projects (project_id, name, archived) VALUES (?, ?, ?)",
                ((project.id, project.name, int(project.archived)) for project in projects),
            )
            self._conn.execute(
                "INSERT OR REPLACE INTO ledger_meta (key, value) VALUES (?, ?)",
                (_PROJECTS_REFRESHED, refreshed_at.isoformat()),
            )

    def projects(self) -> dict[str, Project]:
        """Every project ever saved, by id."""
        cursor = self._conn.execute("SELECT project_id, name, archived FROM projects")
        return {pid: Project(id=pid, name=name, archived=bool(archived)) for pid, name, archived in cursor}

    def names(self) -> dict[str, str]:
        """The name of every project ever saved, by id."""
        return dict(self._conn.execute("SELECT project_id, name FROM projects"))

    def projects_refreshed_at(self) -> dt.datetime | None:
        """When the project list was last saved, or None if never."""
        row = self._conn.execute("SELECT value FROM ledger_meta WHERE key = ?", (_PROJECTS_REFRESHED,)).fetchone()
        return None if row is None else dt.datetime.fromisoformat(row[0])

    def _write(self, table: str, second: str, day: dt.date, content: _DayContent) -> None:
        """Replace a day's rows of `table`, keyed (project_id, `second`), by `content`."""
        iso = day.isoformat()
        self._conn.execute(f"DELETE FROM {table} WHERE day = ?", (iso,))
        self._conn.executemany(
            f"INSERT INTO {table} (day, project_id, {second}, amount_usd) VALUES (?, ?, ?, ?)",
            [(iso, project_id, key, str(amount)) for (project_id, key), amount in content.items()],
        )

    def _key_contents(self, start: dt.date, end: dt.date) -> dict[dt.date, _DayContent]:
        """Stored key rows of the days in [start, end), per day."""
        return self._read(
            "SELECT day, project_id, api_key_id, amount_usd FROM key_cost_rows WHERE day >= ? AND day < ?", start, end
        )

    def _contents(self, start: dt.date, end: dt.date) -> dict[dt.date, _DayContent]:
        """Stored rows of the days in [start, end), per day."""
        return self._read(
            "SELECT day, project_id, line_item, amount_usd FROM cost_rows WHERE day >= ? AND day < ?", start, end
        )

    def _read(self, query: str, start: dt.date, end: dt.date) -> dict[dt.date, _DayContent]:
        """Rows (day, two key columns, amount) of [start, end), per day."""
        cursor = self._conn.execute(query, (start.isoformat(), end.isoformat()))
        contents: dict[dt.date, _DayContent] = {}
        last_day, content = "", {}
        for day, first, second, amount in cursor:
            if day != last_day:  # rows come in primary-key order, grouped by day
                content = contents.setdefault(dt.date.fromisoformat(day), {})
                last_day = day
            content[(first, second)] = Decimal(amount)
        return contents


def _aggregate(rows: Iterable[CostRow]) -> dict[dt.date, _DayContent]:
    """Rows per day per (project_id, line_item); duplicates (e.g. one per API key) are added up."""
    days: dict[dt.date, _DayContent] = {}
    last_day, content = None, {}
    for row in rows:
        if row.day != last_day:
            content = days.setdefault(row.day, {})
            last_day = row.day
        key = (row.project_id, row.line_item or UNGROUPED)
        previous = content.get(key)
        content[key] = row.amount_usd if previous is None else exact_sum((previous, row.amount_usd))
    return days


def _aggregate_keys(rows: Iterable[CostRow]) -> dict[dt.date, _DayContent]:
    """Rows per day per (project_id, api_key_id), summed over line items."""
    days: dict[dt.date, _DayContent] = {}
    for row in rows:
        content = days.setdefault(row.day, {})
        key = (row.project_id, row.api_key_id or NO_API_KEY)
        previous = content.get(key)
        content[key] = row.amount_usd if previous is None else exact_sum((previous, row.amount_usd))
    return days


def _differs(old: _DayContent, new: _DayContent) -> bool:
    """Whether a day's content changed; equal line items imply equal project totals. Zero counts as absent."""
    return _nonzero(old) != _nonzero(new)


def _nonzero(content: _DayContent) -> _DayContent:
    return {key: amount for key, amount in content.items() if amount}
