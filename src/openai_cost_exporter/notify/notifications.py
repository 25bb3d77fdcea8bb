"""Notification state: which alerts were already said, and an outbox of messages still to deliver.

No spam: at most one message per (rule, subject, UTC day, level), plus one more each time the value
reaches `escalation_factor` x the value last notified. Nothing lost: deciding a message and queuing it in the
outbox is one SQLite transaction, and a message leaves the outbox only once the notifier accepted it (failures
back off exponentially, honouring Slack's Retry-After). Both live in the shared state file, so they survive
restarts. Delivering, and never posting twice, is delivery.py's.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.errors import ExporterError
from openai_cost_exporter.notify.delivery import Delivery, DeliveryReport
from openai_cost_exporter.notify.messages import (
    MessageContext,
    Notifier,
    OutboxMessage,
    Record,
    alert_record,
    digest_record,
)
from openai_cost_exporter.notify.outbox_store import Key, OutboxStore
from openai_cost_exporter.rules import ORGANIZATION, Alert, Digest

if TYPE_CHECKING:
    from openai_cost_exporter.core.clock import Clock
    from openai_cost_exporter.core.selfmetrics import SelfMetrics

logger = logging.getLogger(__name__)

DIGEST = "digest"


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
        self._store = OutboxStore(conn)
        self._clock = clock
        self._metrics = metrics
        self._factor = escalation_factor
        self._delivery = Delivery(
            self._store, clock, metrics, backoff_seconds=backoff_seconds, max_backoff_seconds=max_backoff_seconds
        )

    # --- deciding ---------------------------------------------------------------------------------

    def decide(
        self, alerts: Sequence[Alert], day: dt.date, context: Callable[[Alert], MessageContext]
    ) -> list[OutboxMessage]:
        """Queue a message for each alert not yet notified on `day` (or escalated); return the new ones."""
        planned = self.undecided(alerts, day)
        contexts = [self._context(context, alert) for alert in planned]
        messages: list[OutboxMessage] = []
        with self._store.atomic():
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

    def track_incidents(
        self, rule: str, firing: Collection[str], day: dt.date
    ) -> tuple[dict[str, dt.date], dict[str, dt.date]]:
        """Open an incident for each newly firing subject and close those that stopped; return the open ones and
        the ones closed now, each with the day it opened (what its messages are keyed by)."""
        with self._store.atomic():
            known = self._store.incidents(rule)
            for subject in firing:
                if subject not in known or known[subject][1] is not None:
                    self._store.open_incident(rule, subject, day)
            closed = {s: opened for s, (opened, end) in known.items() if end is None and s not in firing}
            for subject in closed:
                self._store.close_incident(rule, subject, day)
            self._store.prune_incidents(day)
            current = self._store.incidents(rule)
        return {s: opened for s, (opened, end) in current.items() if end is None}, closed

    def incident_subjects(self, rule: str, day: dt.date) -> set[str]:
        """Subjects with an incident of `rule` open, or closed on `day`."""
        return {s for s, (_, end) in self._store.incidents(rule).items() if end is None or end == day}

    def digest_queued(self, day: dt.date) -> bool:
        """Whether the digest of `day` was already queued."""
        return self._store.last_value(_digest_key(day)) is not None

    def decide_digest(self, digest: Digest, day: dt.date) -> OutboxMessage | None:
        """Queue the digest unless one was already queued for `day`."""
        key = _digest_key(day)
        with self._store.atomic():
            if self._store.last_value(key) is not None:
                return None
            message = self._queue(key, digest.total, escalation=False, record=digest_record(digest))
        self._update_pending()
        return message

    def _decision(self, alert: Alert, day: dt.date) -> _Decision | None:
        last = self._store.last_value(_alert_key(alert, day))
        escalation = message_due(last, alert.value, self._factor)
        return None if escalation is None else _Decision(escalation=escalation, previous=last)

    @staticmethod
    def _context(context: Callable[[Alert], MessageContext], alert: Alert) -> MessageContext:
        try:
            return context(alert)
        except ExporterError as err:  # a message without line items beats no message
            logger.warning("no details for the %s alert on %s: %s", alert.rule, alert.subject_id, err)
            return MessageContext()

    def _queue_alert(self, alert: Alert, day: dt.date, ctx: MessageContext, decision: _Decision) -> OutboxMessage:
        ctx = replace(ctx, escalation=decision.escalation, previous_value=decision.previous)
        record = alert_record(alert, ctx)
        return self._queue(_alert_key(alert, day), alert.value, escalation=decision.escalation, record=record)

    def _queue(self, key: Key, value: Decimal, *, escalation: bool, record: Record) -> OutboxMessage:
        now = self._now()
        self._store.remember(key, value, now)
        return self._store.insert(key, escalation=escalation, record=record, now=now)

    def prune(self, before: dt.date) -> None:
        """Forget what was said about days before `before`, and delivered messages of those days (retention)."""
        self._store.prune(before)

    # --- delivering (delivery.py) ------------------------------------------------------------------

    def pending(self) -> list[OutboxMessage]:
        """Messages not delivered yet, oldest first."""
        return self._delivery.pending()

    def deliver(self, notifier: Notifier) -> DeliveryReport:
        """Send pending messages oldest first (see `Delivery.deliver`)."""
        return self._delivery.deliver(notifier)

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `attempts` failures (see `Delivery.backoff`)."""
        return self._delivery.backoff(attempts, retry_after)

    def _update_pending(self) -> int:
        return self._delivery.update_pending()

    def _now(self) -> float:
        return self._clock.now().timestamp()


def message_due(last: Decimal | None, value: Decimal, factor: Decimal) -> bool | None:
    """The rule of no spam: a first message (False), an escalation (True: `value` reached `factor` x the value
    last notified), or no message (None). The backtest replays the same rule."""
    if last is None:
        return False
    if last > 0 and value >= factor * last:
        return True
    return None


def _alert_key(alert: Alert, day: dt.date) -> Key:
    day = alert.since or day  # an incident's messages are keyed by the day it opened, whatever day it is now
    return Key(alert.rule, alert.subject_id, day, alert.level)


def _digest_key(day: dt.date) -> Key:
    return Key(DIGEST, ORGANIZATION, day, DIGEST)
