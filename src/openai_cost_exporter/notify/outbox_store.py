"""The SQL side of notification state: the `alert_notified` and `outbox` tables and their rows.

`Notifications` decides and delivers; this module only reads and writes rows, so the schema, the mapping
from rows to `OutboxMessage` and the transaction plumbing live in one place.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from openai_cost_exporter.core.errors import StateError
from openai_cost_exporter.core.transaction import transaction
from openai_cost_exporter.notify.messages import OutboxMessage, Record
from openai_cost_exporter.rules.decision import Incident, Key

logger = logging.getLogger(__name__)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alert_notified (
        rule TEXT NOT NULL, subject_id TEXT NOT NULL, day TEXT NOT NULL, level TEXT NOT NULL,
        value TEXT NOT NULL, notified_at REAL NOT NULL,
        PRIMARY KEY (rule, subject_id, day, level))""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rule TEXT NOT NULL, subject_id TEXT NOT NULL, day TEXT NOT NULL, level TEXT NOT NULL,
        escalation INTEGER NOT NULL, payload TEXT NOT NULL, created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_attempt_at REAL, delivered_at REAL,
        sending_at REAL, in_doubt INTEGER NOT NULL DEFAULT 0, given_up_at REAL)""",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, id)",
    # An incident (a runaway, a spike) lasts across cycles and midnights: open while its rule fires, closed the day
    # it stops (a runaway) or a quiet week after it was last seen (a spike: `seen`, its ratios `ratio` and `peak`).
    """CREATE TABLE IF NOT EXISTS incidents (
        rule TEXT NOT NULL, subject_id TEXT NOT NULL, opened TEXT NOT NULL, closed TEXT, seen TEXT, ratio TEXT,
        peak TEXT, PRIMARY KEY (rule, subject_id))""",
)
#: Columns added after 0.1 (issue 11), with their declarations: an older file gains them when opened.
#: `sending_at`: an attempt is under way (committed before the post, cleared with its outcome; a crash leaves it);
#: `in_doubt`: attempts whose answer was lost (each may have been delivered: it is sent again until one is
#: answered); `given_up_at`: no more tries (Slack refused it for good, issue 21; an earlier try may have been shown).
_ADDED_COLUMNS = {
    "sending_at": "REAL",
    "in_doubt": "INTEGER NOT NULL DEFAULT 0",
    "given_up_at": "REAL",
}
#: Columns of `incidents` added with the spike incidents (issue 20).
_ADDED_INCIDENT_COLUMNS = ("seen", "ratio", "peak")
_OUTBOX_COLUMNS = (
    "id, rule, subject_id, day, level, escalation, payload, created_at, attempts, next_attempt_at, in_doubt, sending_at"
)
_WAITING = "delivered_at IS NULL AND given_up_at IS NULL"
#: Longest delivery error kept in `outbox.last_error` (a whole HTML error page is of no use there).
MAX_ERROR_CHARS = 500


class OutboxStore:
    """Rows of what was notified and of the messages still to deliver, in the shared state file."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        with self.atomic():
            for statement in _SCHEMA:
                self._execute(statement)
            have = {row[1] for row in self._execute("PRAGMA table_info(outbox)")}
            for column, declaration in _ADDED_COLUMNS.items():
                if column not in have:
                    self._execute(f"ALTER TABLE outbox ADD COLUMN {column} {declaration}")
            have = {row[1] for row in self._execute("PRAGMA table_info(incidents)")}
            for column in _ADDED_INCIDENT_COLUMNS:
                if column not in have:
                    self._execute(f"ALTER TABLE incidents ADD COLUMN {column} TEXT")

    def incidents(self, rule: str) -> dict[str, Incident]:
        """The incidents of `rule` by subject_id, as the decision keeps them (rules/decision.py)."""
        cursor = self._execute(
            "SELECT subject_id, opened, closed, seen, ratio, peak FROM incidents WHERE rule = ?", (rule,)
        )
        return {
            s: Incident(_day(o), _day(c) if c else None, _day(seen) if seen else None, _ratio(r), _ratio(p))
            for s, o, c, seen, r, p in cursor
        }

    def save_incidents(self, rule: str, incidents: Mapping[str, Incident]) -> None:
        """Make the stored incidents of `rule` exactly `incidents` (call inside `atomic`)."""
        self._execute("DELETE FROM incidents WHERE rule = ?", (rule,))
        for subject_id, incident in incidents.items():
            closed, seen = (d.isoformat() if d is not None else None for d in (incident.closed, incident.seen))
            ratio, peak = (str(r) if r is not None else None for r in (incident.ratio, incident.peak))
            self._execute(
                "INSERT INTO incidents (rule, subject_id, opened, closed, seen, ratio, peak)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rule, subject_id, incident.opened.isoformat(), closed, seen, ratio, peak),
            )

    def said_since(self, day: dt.date) -> dict[Key, Decimal]:
        """The value last notified of every key from `day` on."""
        cursor = self._execute(
            "SELECT rule, subject_id, day, level, value FROM alert_notified WHERE day >= ?", (day.isoformat(),)
        )
        return {Key(r, s, dt.date.fromisoformat(d), lv): Decimal(v) for r, s, d, lv, v in cursor}

    def last_value(self, key: Key) -> Decimal | None:
        """The value last notified for `key`, or None when nothing was."""
        row = self._execute(
            "SELECT value FROM alert_notified WHERE rule = ? AND subject_id = ? AND day = ? AND level = ?",
            key.params(),
        ).fetchone()
        return None if row is None else Decimal(row[0])

    def remember(self, key: Key, value: Decimal, now: float) -> None:
        """Record that `key` was notified at `value`."""
        self._execute(
            "INSERT INTO alert_notified (rule, subject_id, day, level, value, notified_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (rule, subject_id, day, level) DO UPDATE SET value = excluded.value,"
            " notified_at = excluded.notified_at",
            (*key.params(), str(value), now),
        )

    def insert(self, key: Key, *, escalation: bool, record: Record, now: float) -> OutboxMessage:
        """Queue a message in the outbox."""
        cursor = self._execute(
            "INSERT INTO outbox (rule, subject_id, day, level, escalation, payload, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*key.params(), int(escalation), json.dumps(record), now),
        )
        # Narrows `int | None` for mypy: an INSERT into a rowid table always sets lastrowid (sqlite3 docs).
        assert cursor.lastrowid is not None  # noqa: S101 - an invariant, not input validation
        return OutboxMessage(
            id=cursor.lastrowid,
            rule=key.rule,
            subject_id=key.subject_id,
            day=key.day,
            level=key.level,
            escalation=escalation,
            record=record,
            created_at=_from_epoch(now),
        )

    def prune(self, before: dt.date) -> None:
        """Forget notified values of days before `before`, and delivered messages of those days."""
        with self.atomic():
            self._execute("DELETE FROM alert_notified WHERE day < ?", (before.isoformat(),))
            self._execute(f"DELETE FROM outbox WHERE day < ? AND NOT ({_WAITING})", (before.isoformat(),))

    def pending(self) -> list[OutboxMessage]:
        """Messages not delivered (nor given up) yet, oldest first."""
        rows = self._execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE {_WAITING} ORDER BY id").fetchall()
        return [_message(row) for row in rows]

    def count_pending(self) -> int:
        (count,) = self._execute(f"SELECT COUNT(*) FROM outbox WHERE {_WAITING}").fetchone()
        return int(count)

    def mark_sending(self, message_id: int, now: float) -> None:
        """Record that an attempt starts now, in a transaction of its own, before anything goes out."""
        with self.atomic():
            self._execute("UPDATE outbox SET sending_at = ?, attempts = attempts + 1 WHERE id = ?", (now, message_id))

    def mark_delivered(self, message_id: int, now: float) -> None:
        with self.atomic():
            self._execute(
                "UPDATE outbox SET delivered_at = ?, sending_at = NULL, last_error = NULL WHERE id = ?",
                (now, message_id),
            )

    def mark_failed(self, message_id: int, *, error: str, next_attempt_at: float, in_doubt: int) -> None:
        with self.atomic():
            self._execute(
                "UPDATE outbox SET sending_at = NULL, last_error = ?, next_attempt_at = ?, in_doubt = ? WHERE id = ?",
                (error[:MAX_ERROR_CHARS], next_attempt_at, in_doubt, message_id),
            )

    def mark_given_up(self, message_id: int, *, error: str, now: float, in_doubt: int) -> None:
        with self.atomic():
            self._execute(
                "UPDATE outbox SET sending_at = NULL, last_error = ?, given_up_at = ?, in_doubt = ? WHERE id = ?",
                (error[:MAX_ERROR_CHARS], now, in_doubt, message_id),
            )

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Run the block as one transaction (nested in the caller's, if one is open): `core.transaction`, with
        SQLite's errors, a failed commit's too, as StateError."""
        try:
            with transaction(self._conn):
                yield
        except sqlite3.Error as err:
            raise StateError(f"notification state: {err}") from err

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, parameters)
        except sqlite3.Error as err:
            raise StateError(f"notification state: {err}") from err


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _ratio(text: str | None) -> Decimal | None:
    return Decimal(text) if text else None


def _from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _message(row: tuple[Any, ...]) -> OutboxMessage:
    msg_id, rule, subject_id, day, level, escalation, payload, created, attempts, next_at, in_doubt, sending = row
    return OutboxMessage(
        id=msg_id,
        rule=rule,
        subject_id=subject_id,
        day=dt.date.fromisoformat(day),
        level=level,
        escalation=bool(escalation),
        record=json.loads(payload),
        created_at=_from_epoch(created),
        attempts=attempts,
        next_attempt_at=None if next_at is None else _from_epoch(next_at),
        in_doubt=in_doubt,
        sending_at=None if sending is None else _from_epoch(sending),
    )
