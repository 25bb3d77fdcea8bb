"""Notification state: which alerts were already said, and an outbox of messages still to deliver.

What becomes a message is the pure decision's (rules/decision.py: no spam, escalations, incidents); this keeps
what it remembers and queues what it decided. Nothing lost: deciding a message and queuing it in the
outbox is one SQLite transaction, and a message leaves the outbox only once the notifier accepted it (failures
back off exponentially, honouring Slack's Retry-After). Both live in the shared state file, so they survive
restarts. Delivering, and never posting twice, is delivery.py's.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
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
from openai_cost_exporter.notify.outbox_store import OutboxStore
from openai_cost_exporter.rules import ORGANIZATION, Alert, Digest
from openai_cost_exporter.rules.decision import (
    RUNAWAY,
    SPIKE,
    AlertState,
    Decision,
    Incident,
    Key,
    Outcome,
    decide_messages,
)

if TYPE_CHECKING:
    from openai_cost_exporter.core.clock import Clock
    from openai_cost_exporter.core.selfmetrics import SelfMetrics

logger = logging.getLogger(__name__)

DIGEST = "digest"


class Notifications:
    """Keeps what the decision remembers (rules/decision.py), queues the messages it decided, and delivers them."""

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
        """Queue a message for each alert not yet notified (or escalated), as a cycle on `day` decides from the
        stored state; return the new ones."""
        decisions, _ = decide_messages(alerts, self.state(day).said, self._factor, day)
        return self.queue(decisions, context)

    def state(self, day: dt.date) -> AlertState:
        """What the decision of a cycle on `day` remembers: the runaway and spike incidents and what was said
        since the oldest day it may look up."""
        incidents, spikes = self._store.incidents(RUNAWAY), self._store.incidents(SPIKE)
        oldest = AlertState(incidents=incidents, spikes=spikes).oldest_day(day)
        return AlertState(incidents=incidents, said=self._store.said_since(oldest), spikes=spikes)

    def keep(self, outcome: Outcome, context: Callable[[Alert], MessageContext]) -> list[OutboxMessage]:
        """Store the incidents of `outcome` and queue its messages, in one transaction."""
        incidents = {RUNAWAY: outcome.state.incidents, SPIKE: outcome.state.spikes}
        return self.queue(outcome.decisions, context, incidents=incidents)

    def queue(
        self,
        decisions: Sequence[Decision],
        context: Callable[[Alert], MessageContext],
        *,
        incidents: Mapping[str, Mapping[str, Incident]] | None = None,
    ) -> list[OutboxMessage]:
        """Queue the message of each decision (unless its key was said meanwhile: never twice) and, with
        `incidents` (by rule), make them the stored incidents, in one transaction."""
        contexts = [self._context(context, decision.alert) for decision in decisions]
        messages: list[OutboxMessage] = []
        with self._store.atomic():
            for rule, kept in (incidents or {}).items():
                self._store.save_incidents(rule, kept)
            for decision, ctx in zip(decisions, contexts, strict=True):
                if self._store.last_value(decision.key) == decision.previous:
                    messages.append(self._queue_alert(decision, ctx))
        if messages:
            logger.info("decided %d new alert message(s): %s", len(messages), ", ".join(m.rule for m in messages))
        self._update_pending()
        return messages

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

    @staticmethod
    def _context(context: Callable[[Alert], MessageContext], alert: Alert) -> MessageContext:
        try:
            return context(alert)
        except ExporterError as err:  # a message without line items beats no message
            logger.warning("no details for the %s alert on %s: %s", alert.rule, alert.subject_id, err)
            return MessageContext()

    def _queue_alert(self, decision: Decision, ctx: MessageContext) -> OutboxMessage:
        ctx = replace(ctx, escalation=decision.escalation, previous_value=decision.previous)
        record = alert_record(decision.alert, ctx)
        return self._queue(decision.key, decision.alert.value, escalation=decision.escalation, record=record)

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


def _digest_key(day: dt.date) -> Key:
    return Key(DIGEST, ORGANIZATION, day, DIGEST)
