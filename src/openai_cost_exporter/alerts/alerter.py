"""The built-in alert path of a cycle: snapshot and estimates -> the pure decision -> the outbox -> a notifier.

What becomes a message is `rules.decision.decide`'s, from the figures of the cycle and the state the outbox keeps
(incidents, what was said); `backtest` replays the same function. Whatever a message needs beyond the figures
(line items, yesterday's totals) is gathered by the cycle (message_inputs.py) and handed in, so nothing here reads
the API or the ledger.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal

from openai_cost_exporter.alerts.message_inputs import LineItems, MessageInputs
from openai_cost_exporter.alerts.policy_check import unknown_project_keys
from openai_cost_exporter.core.clock import Clock
from openai_cost_exporter.core.models import DAY, ZERO
from openai_cost_exporter.core.money import ratio
from openai_cost_exporter.figures.estimates import Estimates
from openai_cost_exporter.figures.snapshot import CostSnapshot, baseline
from openai_cost_exporter.figures.spend_limits import limit_figures
from openai_cost_exporter.notify.delivery import DeliveryReport
from openai_cost_exporter.notify.messages import MessageContext, Notifier
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.notify.text import limit_details, runaway_details
from openai_cost_exporter.rules import ORGANIZATION, Alert, AlertPolicy, LimitFigures, SpendFigures, build_digest
from openai_cost_exporter.rules.decision import Figures, Outcome, decide

log = logging.getLogger(__name__)

TOP_LINE_ITEMS = 3
Names = Mapping[str, str]


class Alerter:
    """Hands each cycle's figures to the decision, keeps what it decided, and delivers the queue."""

    def __init__(
        self,
        *,
        policy: AlertPolicy,
        notifications: Notifications,
        notifier: Notifier,
        clock: Clock,
        digest_grace: dt.timedelta | None = None,
        retention: dt.timedelta = dt.timedelta(days=400),
    ) -> None:
        self._policy = policy
        self._notifications = notifications
        self._notifier = notifier
        self._clock = clock
        self._digest_grace = digest_grace
        self._retention = retention
        self._warned: set[str] = set()
        self._limits: dict[str, LimitFigures] = {}  # the spend limit figures of the last evaluation, by subject

    def check_policy(self, names: Mapping[str, str]) -> None:
        """Say once, in the log, each `[alerts.projects]` key that matches no project (a typo keeps defaults)."""
        if not names:
            return  # before the first names listing every key would look unknown
        for problem in unknown_project_keys(self._policy, names):
            if problem not in self._warned:
                self._warned.add(problem)
                log.warning("%s", problem)

    def decide(
        self,
        snapshot: CostSnapshot | None,
        estimates: Estimates | None,
        names: Mapping[str, str],
        day: dt.date,
    ) -> Outcome:
        """Every alert the figures breach and the messages due (rules/decision.py): the billed rules on a fresh
        snapshot, the runaway rule on fresh estimates, each without the other when it is missing. Nothing is
        stored until `queue`."""
        figures = cycle_figures(snapshot, estimates, names)
        if snapshot is not None:  # the limit messages' details (`_context`) read the figures they were judged on
            self._limits = {limit.subject_id: limit for limit in figures.limits}
        return decide(figures, self._notifications.state(day), self._policy, day, names)

    def digest_due(self, day: dt.date) -> bool:
        """Whether yesterday's digest is wanted now (opt-in, after the grace for late revisions)."""
        if self._digest_grace is None:
            return False
        since_midnight = self._clock.now() - dt.datetime.combine(day, dt.time(), dt.UTC)
        return since_midnight >= self._digest_grace and not self._notifications.digest_queued(day - DAY)

    def queue(
        self, day: dt.date, data_time: dt.datetime, outcome: Outcome, inputs: MessageInputs, names: Names
    ) -> None:
        """Keep what the decision remembers and queue its messages (and the digest when its totals came)."""
        self._notifications.keep(outcome, lambda alert: self._context(alert, data_time, inputs))
        if inputs.digest_totals is not None:
            self._queue_digest(day, inputs.digest_totals, names)
        self._notifications.prune(day - self._retention)

    def deliver(self) -> DeliveryReport:
        """Send what is pending (decided in this cycle or an earlier one)."""
        return self._notifications.deliver(self._notifier)

    @staticmethod
    def states(alerts: Sequence[Alert]) -> dict[str, str]:
        return alert_states(alerts)

    def _context(self, alert: Alert, data_time: dt.datetime, inputs: MessageInputs) -> MessageContext:
        details = runaway_details(alert, inputs.models.get(alert.subject_id, ()))
        if alert.rule == "spend_limit" and alert.subject_id in self._limits:
            details = limit_details(self._limits[alert.subject_id], data_time)
        return MessageContext(
            line_items=top_line_items(alert.subject_id, inputs.line_items),
            data_time=data_time,
            baseline_days=self._policy.baseline_days,
            details=details,
            keys=inputs.keys.get(alert.subject_id, ()),
        )

    def _queue_digest(self, today: dt.date, totals: Mapping[dt.date, Mapping[str, Decimal]], names: Names) -> None:
        yesterday = today - DAY
        digest = build_digest(
            yesterday,
            dict(totals.get(yesterday, {})),
            baseline(totals, yesterday, self._policy.baseline_days),
            {pid: names.get(pid, pid) for day in totals.values() for pid in day},
        )
        self._notifications.decide_digest(digest, yesterday)


def cycle_figures(snapshot: CostSnapshot | None, estimates: Estimates | None, names: Mapping[str, str]) -> Figures:
    """What the decision judges of a cycle: the billed figures of a snapshot, the runaway figures of estimates."""
    # No usual rate yet (a young organization, a usage history lost): the runaway rule judges nothing, and closes
    # nothing either (an empty figures map would say every open runaway is over).
    runaways = None
    if estimates is not None and estimates.usual_known:
        runaways = {f.subject_id: f for f in estimates.runaway_figures(names)}
    if snapshot is None:
        return Figures(runaways=runaways)
    return Figures(
        projects=project_figures(snapshot),
        organization=organization_figures(snapshot),
        limits=limit_figures(snapshot),
        runaways=runaways,
    )


def project_figures(snapshot: CostSnapshot) -> list[SpendFigures]:
    return [
        SpendFigures(
            subject_id=pid,
            subject_name=snapshot.name(pid),
            today=snapshot.today.get(pid, ZERO),
            baseline=snapshot.baseline.get(pid, ZERO),
            month_to_date=snapshot.month_to_date.get(pid, ZERO),
            forecast=snapshot.forecast.get(pid, ZERO),
            spread=snapshot.spread.get(pid, ZERO),
            known=snapshot.baseline_known,
        )
        for pid in snapshot.project_ids
    ]


def organization_figures(snapshot: CostSnapshot) -> SpendFigures:
    return SpendFigures(
        subject_id=ORGANIZATION,
        subject_name="Organization",
        today=snapshot.total(snapshot.today),
        baseline=snapshot.total(snapshot.baseline),
        month_to_date=snapshot.total(snapshot.month_to_date),
        forecast=snapshot.total(snapshot.forecast),
        known=snapshot.baseline_known,
    )


def top_line_items(subject_id: str, items: LineItems | None) -> list[tuple[str, Decimal]]:
    """The largest line items of a project (or of the organization) today."""
    totals: dict[str, Decimal] = {}
    for (project_id, line_item), amount in (items or {}).items():
        if subject_id in (ORGANIZATION, project_id):
            totals[line_item] = totals.get(line_item, ZERO) + amount
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)[:TOP_LINE_ITEMS]


def alert_states(alerts: Sequence[Alert]) -> dict[str, str]:
    """A short state per project for the spend page, e.g. `spike (4.0×)`, `daily budget`."""
    states: dict[str, str] = {}
    for alert in alerts:
        if alert.subject_id == ORGANIZATION or alert.level == "resolved":
            continue
        text = alert.rule.replace("_", " ")
        if alert.rule == "spike" and alert.ratio is not None:
            text = f"spike ({ratio(alert.ratio)})"
        elif alert.rule == "spike":
            text = "new spend"
        elif alert.rule == "runaway":
            text = "runaway (estimate)"
        elif alert.rule == "monthly_budget":
            text = f"monthly budget {alert.level}"
        elif alert.rule == "spend_limit":
            text = {"forecast": "hard limit ahead", "firing": "near hard limit"}.get(alert.level, "hard limit reached")
        states[alert.subject_id] = ", ".join(filter(None, [states.get(alert.subject_id), text]))
    return states
