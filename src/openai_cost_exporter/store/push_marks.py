"""The ledger's push bookkeeping: days whose final totals still await a push, and days pushed, per push target.

A push target is a VictoriaMetrics (export/push.py `push_target`): a new one has none of the days, so `backfill`
fills it. A state file from before push targets kept one list of pushed days: the first target that asks adopts it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable

from openai_cost_exporter.core.transaction import transaction


class PushMarks:
    """Mixed into the ledger (store/ledger.py), whose tables `unpushed_days`, `pushed_days` and `pushed_to` hold
    these marks."""

    _conn: sqlite3.Connection

    def mark_unpushed(self, days: Iterable[dt.date]) -> None:
        """Remember closed days whose final totals must be (re)pushed to VictoriaMetrics."""
        with transaction(self._conn):
            self._conn.executemany(
                "INSERT OR IGNORE INTO unpushed_days (day) VALUES (?)", ((day.isoformat(),) for day in days)
            )

    def unpushed_days(self) -> list[dt.date]:
        """Days still awaiting a push, oldest first."""
        cursor = self._conn.execute("SELECT day FROM unpushed_days ORDER BY day")
        return [dt.date.fromisoformat(day) for (day,) in cursor]

    def mark_pushed(self, days: Iterable[dt.date], target: str = "") -> None:
        """Forget the push marks of these days, and count the push to `target`."""
        isos = [(day.isoformat(),) for day in days]
        with transaction(self._conn):
            self._adopt_legacy(target)
            self._conn.executemany("DELETE FROM unpushed_days WHERE day = ?", isos)
            self._conn.executemany(
                "INSERT INTO pushed_to (target, day, pushes) VALUES (?, ?, 1)"
                " ON CONFLICT (target, day) DO UPDATE SET pushes = pushes + 1",
                [(target, iso) for (iso,) in isos],
            )

    def pushed_days(self, start: dt.date, end: dt.date, target: str = "") -> dict[dt.date, int]:
        """Per day in [start, end) pushed to `target` at least once: how many times."""
        if self._conn.execute("SELECT 1 FROM pushed_days LIMIT 1").fetchone() is not None:
            with transaction(self._conn):
                self._adopt_legacy(target)
        cursor = self._conn.execute(
            "SELECT day, pushes FROM pushed_to WHERE target = ? AND day >= ? AND day < ?",
            (target, start.isoformat(), end.isoformat()),
        )
        return {dt.date.fromisoformat(day): pushes for day, pushes in cursor}

    def _adopt_legacy(self, target: str) -> None:
        """A state file from before push targets: its pushed days were the one target's; the first to ask takes
        them (the URL is the same across an upgrade, as a rule)."""
        if self._conn.execute("SELECT 1 FROM pushed_days LIMIT 1").fetchone() is None:
            return
        if self._conn.execute("SELECT 1 FROM pushed_to LIMIT 1").fetchone() is None:
            self._conn.execute("INSERT INTO pushed_to SELECT ?, day, pushes FROM pushed_days", (target,))
        self._conn.execute("DELETE FROM pushed_days")
