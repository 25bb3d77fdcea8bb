"""Delivering the outbox: oldest first, backing off on failure, and never posting a message twice.

Nothing twice (issue 11). Each attempt is committed as "sending" in a transaction of its own before the post
(a full disk fails that commit, and nothing is posted). Slack's answer is recorded in a second one; should that
commit fail, the process keeps the outcome in memory and writes it before it sends anything else, so a failed
commit never leads to a second post. A message is *in doubt* when an attempt may have been delivered without our
knowing: the request went out and no answer came back (a NotifyError that `maybe_delivered`), or an attempt was
still "sending" when the process stopped (a crash between Slack's 200 and the commit). A message in doubt is sent
once more, after its back-off, with a warning that Slack may show it twice (webhooks have no idempotency key); if
that try is in doubt too, it is given up with an error line (counted in errors_total{stage="notify"}).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.errors import NotifyError, StateError
from openai_cost_exporter.notify.messages import Notifier, OutboxMessage
from openai_cost_exporter.notify.outbox_store import OutboxStore

if TYPE_CHECKING:
    from openai_cost_exporter.core.clock import Clock
    from openai_cost_exporter.core.selfmetrics import SelfMetrics

logger = logging.getLogger(__name__)

#: Attempts that may have been delivered before a message is given up: the first, and the one repeat it may cause.
MAX_IN_DOUBT = 2


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one `deliver` round did."""

    sent: int
    failed: int
    deferred: int  # waiting for their back-off to expire
    pending: int  # still in the outbox afterwards


class Delivery:
    """Sends the outbox's pending messages through a notifier and records each outcome."""

    def __init__(
        self,
        store: OutboxStore,
        clock: Clock,
        metrics: SelfMetrics | None = None,
        *,
        backoff_seconds: float = defaults.NOTIFY_BACKOFF_SECONDS,
        max_backoff_seconds: float = defaults.NOTIFY_MAX_BACKOFF_SECONDS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        # Outcomes known but not recorded (their commit failed), by message id: written before anything is sent.
        self._unrecorded: dict[int, Callable[[], None]] = {}

    def pending(self) -> list[OutboxMessage]:
        """Messages not delivered yet, oldest first."""
        return self._store.pending()

    def deliver(self, notifier: Notifier) -> DeliveryReport:
        """Send pending messages oldest first; stop at the first failure (the target looks down).

        Raises StateError, before sending anything, while an earlier outcome cannot be recorded (a full disk)."""
        self._record_unrecorded()
        self._settle_interrupted()
        sent = failed = deferred = 0
        now = self._clock.now()
        for message in self.pending():
            if message.next_attempt_at is not None and message.next_attempt_at > now:
                deferred += 1
                continue
            if not self._send(notifier, message):
                failed += 1
                break
            sent += 1
        pending = self.update_pending()
        if sent or failed:
            logger.info("notifications: %d sent, %d failed, %d pending", sent, failed, pending)
        return DeliveryReport(sent=sent, failed=failed, deferred=deferred, pending=pending)

    def _send(self, notifier: Notifier, message: OutboxMessage) -> bool:
        if message.in_doubt:
            logger.warning(
                "%s message %d may have been delivered already (an earlier attempt's outcome is unknown); sending it "
                "once more, so Slack may show it twice",
                message.rule,
                message.id,
            )
        self._store.mark_sending(message.id, self._now())  # committed first: a crash from here leaves it in doubt
        try:
            notifier.send(message)
        except NotifyError as err:
            self._failed(message, err)
            return False
        self._delivered(message)
        return True

    def _delivered(self, message: OutboxMessage) -> None:
        if self._metrics is not None:
            self._metrics.notifications_sent.labels(rule=message.rule).inc()
        self._record(message, partial(self._store.mark_delivered, message.id, self._now()))

    def _failed(self, message: OutboxMessage, err: NotifyError) -> None:
        attempts = message.attempts + 1
        in_doubt = message.in_doubt + err.maybe_delivered
        if self._metrics is not None:
            self._metrics.count_error("notify")
        if in_doubt >= MAX_IN_DOUBT:
            self._give_up(message, str(err), in_doubt)
            return
        delay = self.backoff(attempts, err.retry_after)
        logger.warning(
            "%s message %d not delivered (attempt %d, next in %.0f s)%s: %s",
            message.rule,
            message.id,
            attempts,
            delay,
            "; it may have been, so the next try may repeat it" if err.maybe_delivered else "",
            err,
        )
        write = partial(self._store.mark_failed, message.id, error=str(err), in_doubt=in_doubt)
        self._record(message, partial(write, next_attempt_at=self._now() + delay))

    def _give_up(self, message: OutboxMessage, error: str, in_doubt: int) -> None:
        logger.error(
            "giving up on %s message %d for %s: %d attempts may have been delivered, none was confirmed; "
            "check the Slack channel (last error: %s)",
            message.rule,
            message.id,
            message.subject_id,
            in_doubt,
            error,
        )
        self._record(
            message, partial(self._store.mark_given_up, message.id, error=error, now=self._now(), in_doubt=in_doubt)
        )

    def _settle_interrupted(self) -> None:
        """Messages still "sending" from an attempt this process knows nothing of (a crash, a kill): in doubt."""
        for message in self.pending():
            if message.sending_at is None:
                continue
            error = f"the attempt at {message.sending_at:%Y-%m-%d %H:%M:%S} UTC left no record of its answer"
            in_doubt = message.in_doubt + 1
            if self._metrics is not None:
                self._metrics.count_error("notify")
            if in_doubt >= MAX_IN_DOUBT:
                self._give_up(message, error, in_doubt)
                continue
            delay = self.backoff(message.attempts)
            logger.warning(
                "%s message %d may have been delivered (%s); one more try in %.0f s, which may repeat it",
                message.rule,
                message.id,
                error,
                delay,
            )
            next_attempt_at = message.sending_at.timestamp() + delay
            self._store.mark_failed(message.id, error=error, next_attempt_at=next_attempt_at, in_doubt=in_doubt)

    def _record(self, message: OutboxMessage, write: Callable[[], None]) -> None:
        """Write an attempt's outcome; if the commit fails, keep it to write before anything else is sent."""
        try:
            write()
        except StateError as err:
            self._unrecorded[message.id] = write
            logger.error(
                "the outcome of %s message %d could not be recorded (%s); it is kept in memory and written before "
                "anything else is sent (a delivered message is not sent again)",
                message.rule,
                message.id,
                err,
            )
            raise

    def _record_unrecorded(self) -> None:
        for message_id, write in list(self._unrecorded.items()):
            write()
            del self._unrecorded[message_id]
            logger.info("recorded the outcome of message %d, which an earlier commit had failed to", message_id)

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `attempts` failures: the Retry-After asked for, else doubling up to a cap."""
        if retry_after is not None:
            return retry_after
        return float(min(self._backoff * 2 ** (attempts - 1), self._max_backoff))

    def update_pending(self) -> int:
        count = self._store.count_pending()
        if self._metrics is not None:
            self._metrics.notifications_pending.set(count)
        return count

    def _now(self) -> float:
        return self._clock.now().timestamp()
