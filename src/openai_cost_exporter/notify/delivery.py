"""Delivering the outbox: oldest first, backing off on failure; at least once, never lost, never twice without cause.

Nothing twice (issue 11). Each attempt is committed as "sending" in a transaction of its own before the post
(a full disk fails that commit, and nothing is posted). Slack's answer is recorded in a second one; should that
commit fail, the process keeps the outcome in memory and writes it before it sends anything else, so a failed
commit never leads to a second post.

Never lost (issue 21). An attempt is *in doubt* when it may have been delivered without our knowing: the request
went out and no answer came back (a NotifyError that `maybe_delivered`: a hang, a dropped connection), or it was
still "sending" when the process stopped (a crash between Slack's 200 and the commit). A post Slack took but never
answered looks exactly like one it never took, and a webhook has no idempotency key, so a message in doubt is
sent again, as often as it takes, until Slack answers: at least once, and at most one extra copy per lost answer.
Each lost answer is counted (`notifications_in_doubt_total`: possible duplicates) and makes the next try wait
longer than a plain failure does (IN_DOUBT_BACKOFF_FACTOR), so a Slack that is slow to answer gets few copies.
Only a permanent refusal (a 4xx other than 408/429: Slack's invalid_payload, invalid_token, no_service,
channel_is_archived) gives a message up, with an error line and `notifications_given_up_total`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING

from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.errors import NotifyError, StateError
from openai_cost_exporter.notify.messages import Notifier, OutboxMessage
from openai_cost_exporter.notify.outbox_store import OutboxStore

if TYPE_CHECKING:
    from openai_cost_exporter.core.clock import Clock
    from openai_cost_exporter.core.selfmetrics import SelfMetrics

logger = logging.getLogger(__name__)

#: After a lost answer, the next try waits this many times the first back-off (5 min by default), doubling with each
#: lost answer, up to the cap: an answer lost to a slow Slack is the costly kind (each may be one more copy).
IN_DOUBT_BACKOFF_FACTOR = 10
#: 4xx answers a retry cannot change (Slack's webhook errors, docs.slack.dev "Handling errors" of incoming webhooks)
#: are permanent; these two are not (a timeout, a rate limit).
RETRYABLE_4XX = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})


def permanent(err: NotifyError) -> bool:
    """Whether Slack refused the message for good: a 4xx answer other than 408 and 429."""
    status = err.status
    return (
        status is not None
        and HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR
        and (status not in RETRYABLE_4XX)
    )


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
                "%s message %d may have been delivered already (%d earlier answer(s) lost); sending it again, so "
                "Slack may show it more than once",
                message.rule,
                message.id,
                message.in_doubt,
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
        if err.maybe_delivered:
            self._count_in_doubt()
        if permanent(err):
            self._give_up(message, str(err), in_doubt)
            return
        delay = (
            self.in_doubt_backoff(attempts, in_doubt)
            if err.maybe_delivered
            else self.backoff(attempts, err.retry_after)
        )
        logger.warning(
            "%s message %d not delivered (attempt %d, next in %.0f s)%s: %s",
            message.rule,
            message.id,
            attempts,
            delay,
            "; it may have been (its answer was lost), so the next try may repeat it" if err.maybe_delivered else "",
            err,
        )
        write = partial(self._store.mark_failed, message.id, error=str(err), in_doubt=in_doubt)
        self._record(message, partial(write, next_attempt_at=self._now() + delay))

    def _give_up(self, message: OutboxMessage, error: str, in_doubt: int) -> None:
        logger.error(
            "giving up on %s message %d for %s: Slack refused it for good (%s); %d earlier attempt(s) may have been "
            "delivered; fix the webhook and check the channel",
            message.rule,
            message.id,
            message.subject_id,
            error,
            in_doubt,
        )
        if self._metrics is not None:
            self._metrics.notifications_given_up.inc()
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
            self._count_in_doubt()
            delay = self.in_doubt_backoff(message.attempts, in_doubt)
            logger.warning(
                "%s message %d may have been delivered (%s); next try in %.0f s, which may repeat it",
                message.rule,
                message.id,
                error,
                delay,
            )
            next_attempt_at = message.sending_at.timestamp() + delay
            self._store.mark_failed(message.id, error=error, next_attempt_at=next_attempt_at, in_doubt=in_doubt)

    def _count_in_doubt(self) -> None:
        if self._metrics is not None:
            self._metrics.notifications_in_doubt.inc()

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

    def in_doubt_backoff(self, attempts: int, in_doubt: int) -> float:
        """Seconds to wait after the `in_doubt`-th lost answer: IN_DOUBT_BACKOFF_FACTOR times the first back-off,
        doubling with each lost answer, never less than a plain failure's wait, up to the cap."""
        wait = IN_DOUBT_BACKOFF_FACTOR * self._backoff * 2 ** (max(in_doubt, 1) - 1)
        return float(min(max(wait, self.backoff(attempts)), self._max_backoff))

    def update_pending(self) -> int:
        count = self._store.count_pending()
        if self._metrics is not None:
            self._metrics.notifications_pending.set(count)
        return count

    def _now(self) -> float:
        return self._clock.now().timestamp()
