"""Notification state: which alerts were already said, and an outbox of messages still to deliver.

No spam: at most one message per (rule, subject, UTC day, level), plus one more each time the value
reaches `escalation_factor` x the value last notified. Nothing lost: deciding a message and queuing it in the
outbox is one SQLite transaction, and a message leaves the outbox only once the notifier accepted it (failures
back off exponentially, honouring Slack's Retry-After). Both live in the shared state file, so they survive
restarts. A crash between Slack's 200 and our commit can repeat that one message (webhooks have no
idempotency key).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from openai_cost_exporter import defaults
from openai_cost_exporter.errors import ExporterError, NotifyError, StateError
from openai_cost_exporter.messages import MessageContext, Notifier, OutboxMessage, Record, alert_record, digest_record
from openai_cost_exporter.rules import ORGANIZATION, Alert, Digest

if TYPE_CHECKING:
    from openai_cost_exporter.clock import Clock
    from openai_cost_exporter.selfmetrics import SelfMetrics

logger = logging.getLogger(__name__)

DIGEST = "digest"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alert_notified (
        rule TEXT NOT NULL, subject_id TEXT NOT NULL, day TEXT NOT NULL, level TEXT NOT NULL,
        value TEXT NOT NULL, notified_at REAL NOT NULL,
        PRIMARY KEY (rule, subject_id, day, level))""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rule TEXT NOT NULL, subject_id TEXT NOT NULL, day TEXT NOT NULL, level TEXT NOT NULL,
        escalation INTEGER NOT NULL, payload TEXT NOT NULL, created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_attempt_at REAL, delivered_at REAL)""",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, id)",
)
_OUTBOX_COLUMNS = "id, rule, subject_id, day, level, escalation, payload, created_at, attempts, next_attempt_at"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one `deliver` round did."""

    sent: int
    failed: int
    deferred: int  # waiting for their back-off to expire
    pending: int  # still in the outbox afterwards


@dataclass(frozen=True, slots=True)
class _Decision:
    escalation: bool
    previous: Decimal | None


class Notifications:
    """Decides which alerts become messages, queues them, and delivers the queue."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        clock: Clock,
        metrics: SelfMetrics | None = None,
        *,
        escalation_factor: Decimal = defaults.ESCALATION_FACTOR,
        backoff_seconds: float = defaults.NOTIFY_BACKOFF_SECONDS,
        max_backoff_seconds: float = defaults.NOTIFY_MAX_BACKOFF_SECONDS,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._metrics = metrics
        self._factor = escalation_factor
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        with self._atomic():
            for statement in _SCHEMA:
                self._execute(statement)

    # --- deciding ---------------------------------------------------------------------------------

    def decide(
        self, alerts: Sequence[Alert], day: dt.date, context: Callable[[Alert], MessageContext]
    ) -> list[OutboxMessage]:
        """Queue a message for each alert not yet notified on `day` (or escalated); return the new ones."""
        planned = self.undecided(alerts, day)
        contexts = [self._context(context, alert) for alert in planned]
        messages: list[OutboxMessage] = []
        with self._atomic():
            for alert, ctx in zip(planned, contexts, strict=True):
                decision = self._decision(alert, day)  # again, inside the transaction: never twice
                if decision is not None:
                    messages.append(self._queue_alert(alert, day, ctx, decision))
        if messages:
            logger.info("decided %d new alert message(s) for %s", len(messages), day)
        self._update_pending()
        return messages

    def undecided(self, alerts: Sequence[Alert], day: dt.date) -> list[Alert]:
        """The alerts that would become a message on `day`: not notified yet, or escalated."""
        return [alert for alert in alerts if self._decision(alert, day) is not None]

    def digest_queued(self, day: dt.date) -> bool:
        """Whether the digest of `day` was already queued."""
        return self._last_value(DIGEST, ORGANIZATION, day, DIGEST) is not None

    def decide_digest(self, digest: Digest, day: dt.date) -> OutboxMessage | None:
        """Queue the digest unless one was already queued for `day`."""
        with self._atomic():
            if self._last_value(DIGEST, ORGANIZATION, day, DIGEST) is not None:
                return None
            self._remember(DIGEST, ORGANIZATION, day, DIGEST, digest.total)
            message = self._insert(DIGEST, ORGANIZATION, day, DIGEST, escalation=False, record=digest_record(digest))
        self._update_pending()
        return message

    def _decision(self, alert: Alert, day: dt.date) -> _Decision | None:
        last = self._last_value(alert.rule, alert.subject_id, day, alert.level)
        if last is None:
            return _Decision(escalation=False, previous=None)
        if last > 0 and alert.value >= self._factor * last:
            return _Decision(escalation=True, previous=last)
        return None

    @staticmethod
    def _context(context: Callable[[Alert], MessageContext], alert: Alert) -> MessageContext:
        try:
            return context(alert)
        except ExporterError as err:  # a message without line items beats no message
            logger.warning("no details for the %s alert on %s: %s", alert.rule, alert.subject_id, err)
            return MessageContext()

    def _queue_alert(self, alert: Alert, day: dt.date, ctx: MessageContext, decision: _Decision) -> OutboxMessage:
        ctx = replace(ctx, escalation=decision.escalation, previous_value=decision.previous)
        self._remember(alert.rule, alert.subject_id, day, alert.level, alert.value)
        return self._insert(
            alert.rule,
            alert.subject_id,
            day,
            alert.level,
            escalation=decision.escalation,
            record=alert_record(alert, ctx),
        )

    def _last_value(self, rule: str, subject_id: str, day: dt.date, level: str) -> Decimal | None:
        row = self._execute(
            "SELECT value FROM alert_notified WHERE rule = ? AND subject_id = ? AND day = ? AND level = ?",
            (rule, subject_id, day.isoformat(), level),
        ).fetchone()
        return None if row is None else Decimal(row[0])

    def _remember(self, rule: str, subject_id: str, day: dt.date, level: str, value: Decimal) -> None:
        self._execute(
            "INSERT INTO alert_notified (rule, subject_id, day, level, value, notified_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (rule, subject_id, day, level) DO UPDATE SET value = excluded.value,"
            " notified_at = excluded.notified_at",
            (rule, subject_id, day.isoformat(), level, str(value), self._now()),
        )

    def _insert(
        self,
        rule: str,
        subject_id: str,
        day: dt.date,
        level: str,
        *,
        escalation: bool,
        record: Record,
    ) -> OutboxMessage:
        created = self._now()
        cursor = self._execute(
            "INSERT INTO outbox (rule, subject_id, day, level, escalation, payload, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rule, subject_id, day.isoformat(), level, int(escalation), json.dumps(record), created),
        )
        assert cursor.lastrowid is not None  # an INSERT into a rowid table always sets it
        return OutboxMessage(
            id=cursor.lastrowid,
            rule=rule,
            subject_id=subject_id,
            day=day,
            level=level,
            escalation=escalation,
            record=record,
            created_at=_from_epoch(created),
        )

    def prune(self, before: dt.date) -> None:
        """Forget what was said about days before `before`, and delivered messages of those days (retention)."""
        with self._atomic():
            self._execute("DELETE FROM alert_notified WHERE day < ?", (before.isoformat(),))
            self._execute("DELETE FROM outbox WHERE day < ? AND delivered_at IS NOT NULL", (before.isoformat(),))

    # --- delivering -------------------------------------------------------------------------------

    def pending(self) -> list[OutboxMessage]:
        """Messages not delivered yet, oldest first."""
        rows = self._execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL ORDER BY id").fetchall()
        return [_message(row) for row in rows]

    def deliver(self, notifier: Notifier) -> DeliveryReport:
        """Send pending messages oldest first; stop at the first failure (the target looks down)."""
        sent = failed = deferred = 0
        now = self._clock.now()
        for message in self.pending():
            if message.next_attempt_at is not None and message.next_attempt_at > now:
                deferred += 1
                continue
            try:
                notifier.send(message)
            except NotifyError as err:
                self._failed(message, err)
                failed += 1
                break
            self._delivered(message)
            sent += 1
        pending = self._update_pending()
        if sent or failed:
            logger.info("notifications: %d sent, %d failed, %d pending", sent, failed, pending)
        return DeliveryReport(sent=sent, failed=failed, deferred=deferred, pending=pending)

    def _delivered(self, message: OutboxMessage) -> None:
        with self._atomic():
            self._execute(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                (self._now(), message.id),
            )
        if self._metrics is not None:
            self._metrics.notifications_sent.labels(rule=message.rule).inc()

    def _failed(self, message: OutboxMessage, err: NotifyError) -> None:
        attempts = message.attempts + 1
        delay = self.backoff(attempts, getattr(err, "retry_after", None))
        with self._atomic():
            self._execute(
                "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
                (attempts, str(err)[:500], self._now() + delay, message.id),
            )
        logger.warning(
            "%s message %d not delivered (attempt %d, next in %.0f s): %s",
            message.rule,
            message.id,
            attempts,
            delay,
            err,
        )
        if self._metrics is not None:
            self._metrics.count_error("notify")

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `attempts` failures: the Retry-After asked for, else doubling up to a cap."""
        if retry_after is not None:
            return retry_after
        return float(min(self._backoff * 2 ** (attempts - 1), self._max_backoff))

    def _update_pending(self) -> int:
        (count,) = self._execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()
        if self._metrics is not None:
            self._metrics.notifications_pending.set(count)
        return int(count)

    # --- plumbing ---------------------------------------------------------------------------------

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, parameters)
        except sqlite3.Error as err:
            raise StateError(f"notification state: {err}") from err

    def _now(self) -> float:
        return self._clock.now().timestamp()

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        # A SAVEPOINT works whatever the connection's isolation_level (the state module owns the connection):
        # it starts a transaction when none is open, and nests inside one that is.
        self._execute("SAVEPOINT notifications")
        try:
            yield
        except BaseException:
            self._execute("ROLLBACK TO notifications")
            self._execute("RELEASE notifications")
            raise
        self._execute("RELEASE notifications")


def _from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _message(row: tuple[Any, ...]) -> OutboxMessage:
    msg_id, rule, subject_id, day, level, escalation, payload, created, attempts, next_at = row
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
    )
