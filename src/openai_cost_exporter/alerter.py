"""The built-in alert path of a cycle: snapshot -> rules -> notification state -> Slack (or the log)."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

from openai_cost_exporter.clock import Clock
from openai_cost_exporter.errors import OpenAIError
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.models import ZERO
from openai_cost_exporter.notifications import Notifications
from openai_cost_exporter.openai_client import AdminClient
from openai_cost_exporter.rules import ORGANIZATION, Alert, AlertPolicy, SpendFigures, build_digest, evaluate
from openai_cost_exporter.selfmetrics import SelfMetrics
from openai_cost_exporter.slack import LogNotifier, MessageContext, Notifier, SlackNotifier
from openai_cost_exporter.snapshot import CostSnapshot, baseline

if TYPE_CHECKING:
    from openai_cost_exporter.config import Settings

log = logging.getLogger(__name__)

DAY = dt.timedelta(days=1)
TOP_LINE_ITEMS = 3


class Alerter:
    """Evaluates every snapshot, queues what is new, and delivers the queue."""

    def __init__(
        self,
        *,
        policy: AlertPolicy,
        notifications: Notifications,
        notifier: Notifier,
        client: AdminClient,
        ledger: Ledger,
        clock: Clock,
        digest_grace: dt.timedelta | None = None,
        retention: dt.timedelta = dt.timedelta(days=400),
    ) -> None:
        self._policy = policy
        self._notifications = notifications
        self._notifier = notifier
        self._client = client
        self._ledger = ledger
        self._clock = clock
        self._digest_grace = digest_grace
        self._retention = retention

    def process(self, snapshot: CostSnapshot) -> Mapping[str, str]:
        alerts = evaluate(self._policy, self.project_figures(snapshot), self.organization_figures(snapshot))
        self._notifications.decide(alerts, snapshot.day, lambda alert: self._context(alert, snapshot))
        if self._digest_grace is not None:
            self._maybe_digest(snapshot)
        self._notifications.deliver(self._notifier)
        self._notifications.prune(snapshot.day - self._retention)
        return alert_states(alerts)

    def deliver_pending(self) -> None:
        self._notifications.deliver(self._notifier)

    @staticmethod
    def project_figures(snapshot: CostSnapshot) -> list[SpendFigures]:
        return [
            SpendFigures(
                subject_id=pid,
                subject_name=snapshot.name(pid),
                today=snapshot.today.get(pid, ZERO),
                baseline=snapshot.baseline.get(pid, ZERO),
                month_to_date=snapshot.month_to_date.get(pid, ZERO),
                forecast=snapshot.forecast.get(pid, ZERO),
            )
            for pid in snapshot.project_ids
        ]

    @staticmethod
    def organization_figures(snapshot: CostSnapshot) -> SpendFigures:
        return SpendFigures(
            subject_id=ORGANIZATION,
            subject_name="Organization",
            today=snapshot.total(snapshot.today),
            baseline=snapshot.total(snapshot.baseline),
            month_to_date=snapshot.total(snapshot.month_to_date),
            forecast=snapshot.total(snapshot.forecast),
        )

    def _context(self, alert: Alert, snapshot: CostSnapshot) -> MessageContext:
        return MessageContext(
            line_items=self._top_line_items(alert.subject_id, snapshot),
            data_time=snapshot.taken_at,
            baseline_days=self._policy.baseline_days,
        )

    def _top_line_items(self, subject_id: str, snapshot: CostSnapshot) -> list[tuple[str, Decimal]]:
        items = snapshot.line_items
        if items is None:
            # Line items are not collected: ask for today's, grouped by line_item, now that a message is due.
            try:
                items = {
                    (row.project_id, row.line_item or "unknown"): row.amount_usd
                    for page in self._client.iter_costs(snapshot.day, snapshot.day + DAY, line_items=True, limit=1)
                    for row in page.rows
                }
            except OpenAIError as exc:
                log.warning("could not fetch line items for the alert message: %s", exc)
                return []
        totals: dict[str, Decimal] = {}
        for (project_id, line_item), amount in items.items():
            if subject_id in (ORGANIZATION, project_id):
                totals[line_item] = totals.get(line_item, ZERO) + amount
        return sorted(totals.items(), key=lambda item: item[1], reverse=True)[:TOP_LINE_ITEMS]

    def _maybe_digest(self, snapshot: CostSnapshot) -> None:
        assert self._digest_grace is not None
        now = self._clock.now()
        if now - dt.datetime.combine(snapshot.day, dt.time(), dt.UTC) < self._digest_grace:
            return  # yesterday's late revisions are still coming in
        yesterday = snapshot.day - DAY
        days = self._policy.baseline_days
        totals = self._ledger.project_totals(yesterday - dt.timedelta(days=days), snapshot.day)
        digest = build_digest(
            yesterday,
            dict(totals.get(yesterday, {})),
            baseline(totals, yesterday, days),
            {pid: snapshot.name(pid) for day in totals.values() for pid in day},
        )
        self._notifications.decide_digest(digest, yesterday)


def alert_states(alerts: list[Alert]) -> dict[str, str]:
    """A short state per project for the spend page, e.g. `spike (4.0×)`, `daily budget`."""
    states: dict[str, str] = {}
    for alert in alerts:
        if alert.subject_id == ORGANIZATION:
            continue
        text = alert.rule.replace("_", " ")
        if alert.rule == "spike" and alert.ratio is not None:
            text = f"spike ({alert.ratio:.1f}×)"
        elif alert.rule == "spike":
            text = "new spend"
        elif alert.rule == "monthly_budget":
            text = f"monthly budget {alert.level}"
        states[alert.subject_id] = ", ".join(filter(None, [states.get(alert.subject_id), text]))
    return states


def build_alerter(
    settings: Settings,
    *,
    conn: sqlite3.Connection,
    clock: Clock,
    metrics: SelfMetrics,
    client: AdminClient,
    ledger: Ledger,
) -> Alerter:
    url = settings.resolved_webhook_url()
    notifier: Notifier = SlackNotifier(url, timeout=settings.request_timeout) if url else LogNotifier(log)
    notifications = Notifications(
        conn,
        clock,
        metrics,
        escalation_factor=settings.alerts.escalation_factor,
        backoff_seconds=settings.notify_backoff,
    )
    return Alerter(
        policy=settings.alerts,
        notifications=notifications,
        notifier=notifier,
        client=client,
        ledger=ledger,
        clock=clock,
        digest_grace=dt.timedelta(hours=settings.digest_grace_hours) if settings.digest else None,
        retention=dt.timedelta(days=settings.retention_days),
    )
