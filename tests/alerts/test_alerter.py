"""The alert path of a cycle: snapshot -> rules -> outbox -> notifier, with the fake API for line items."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from prometheus_client import CollectorRegistry

from openai_cost_exporter.alerts.alerter import Alerter, alert_states, cycle_figures
from openai_cost_exporter.alerts.message_inputs import gather_inputs
from openai_cost_exporter.app import build_alerter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.errors import NotifyError
from openai_cost_exporter.core.models import CostRow
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.figures.estimates import Estimates
from openai_cost_exporter.figures.snapshot import CostSnapshot, build_snapshot
from openai_cost_exporter.notify.log_notifier import LogNotifier
from openai_cost_exporter.notify.messages import OutboxMessage
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.notify.slack import SlackNotifier
from openai_cost_exporter.notify.slack_blocks import render
from openai_cost_exporter.rules import Alert, AlertPolicy
from openai_cost_exporter.sources.openai.client import AdminClient, build_http_client
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state

KEY = "sk-admin-alerter-test"
NOW = dt.datetime(2026, 11, 18, 20, tzinfo=dt.UTC)
D = Decimal


class Inbox:
    """A notifier that keeps what it is given, or refuses it while `down`."""

    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []
        self.down = False

    def send(self, message: OutboxMessage) -> None:
        if self.down:
            raise NotifyError("Slack webhook http://127.0.0.1/… answered 503")
        self.messages.append(message)


class World:
    def __init__(self, tmp_path: Path, api: FakeAdminAPI, clock: FrozenClock) -> None:
        self.conn = open_state(tmp_path / "state.sqlite3")
        self.http = build_http_client(api.base_url, KEY)
        self.ledger = Ledger(self.conn)
        self.inbox = Inbox()
        self.clock = clock
        self.api = api
        self.client = AdminClient(self.http)

    def alerter(self, policy: AlertPolicy, digest_grace: dt.timedelta | None = None) -> Stage:
        alerter = Alerter(
            policy=policy,
            notifications=Notifications(self.conn, self.clock, backoff_seconds=0),
            notifier=self.inbox,
            clock=self.clock,
            digest_grace=digest_grace,
        )
        return Stage(alerter, self)


class Stage:
    """The alert stage as the cycle runs it: evaluate, gather what the due messages need, queue, deliver."""

    def __init__(self, alerter: Alerter, world: World) -> None:
        self.alerter = alerter
        self._world = world

    def process(self, snap: CostSnapshot) -> dict[str, str]:
        outcome = self.alerter.decide(snap, None, snap.names, snap.day)
        due = [decision.alert for decision in outcome.decisions]
        digest = self.alerter.digest_due(snap.day)
        inputs = gather_inputs(
            due,
            snap,
            day=snap.day,
            source=self._world.client,
            ledger=self._world.ledger,
            baseline_days=7,
            digest=digest,
        )
        self.alerter.queue(snap.day, snap.taken_at, outcome, inputs, snap.names)
        self.alerter.deliver()
        return self.alerter.states(outcome.alerts)

    def deliver_pending(self) -> None:
        self.alerter.deliver()


def payload(message: OutboxMessage) -> dict[str, Any]:
    """What Slack would be sent for an outbox message."""
    return render(message)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def world(tmp_path: Path, clock: FrozenClock) -> Iterator[World]:
    org = FakeOrg.generate(seed=9, project_count=10, clock=clock)
    with FakeAdminAPI(org, admin_key=KEY) as api:
        w = World(tmp_path, api, clock)
        yield w
        w.http.close()
        w.conn.close()


def snapshot(
    today: dict[str, str], baseline: dict[str, str], line_items: dict[tuple[str, str], str] | None = None
) -> CostSnapshot:
    """A snapshot of NOW whose baseline window holds `baseline` on each of the 7 days before today."""
    totals = {NOW.date(): {pid: D(v) for pid, v in today.items()}}
    for n in range(1, 8):
        totals[NOW.date() - dt.timedelta(days=n)] = {pid: D(v) for pid, v in baseline.items()}
    items = {key: D(v) for key, v in line_items.items()} if line_items is not None else None
    return build_snapshot(NOW, {"proj_a": "Alpha", "proj_b": "Beta"}, totals, baseline_days=7, line_items=items)


def test_spike_message_names_the_top_line_items_of_the_snapshot(world: World) -> None:
    """With line items collected, the message lists the project's biggest line items, largest first."""
    items = {("proj_a", "gpt-4o, output"): "3", ("proj_a", "gpt-4o, input"): "1", ("proj_b", "other"): "9"}
    states = world.alerter(AlertPolicy(organization=False)).process(snapshot({"proj_a": "4"}, {"proj_a": "1"}, items))
    assert states == {"proj_a": "spike (4.0×)"}
    [message] = world.inbox.messages
    text = str(payload(message)["blocks"])
    assert text.index("gpt-4o, output") < text.index("gpt-4o, input") and "other" not in text


def test_line_items_are_fetched_when_not_collected(world: World) -> None:
    """Without collected line items, the message asks the API for today's, grouped by line_item."""
    project = next(p for p in world.api.org.projects if p.daily_usd > 0 and not p.archived)
    before = world.api.request_counts().get("/v1/organization/costs", 0)
    world.alerter(AlertPolicy(organization=False)).process(snapshot({project.id: "40"}, {project.id: "1"}))
    assert world.api.request_counts()["/v1/organization/costs"] == before + 1
    assert project.line_items[0] in str(payload(world.inbox.messages[0])["blocks"])


def test_a_failed_line_item_fetch_still_sends_the_alert(world: World) -> None:
    """When the API fails, the message goes out without line items."""
    world.api.faults.update({"server_error_next": 50})
    world.alerter(AlertPolicy(organization=False)).process(snapshot({"proj_a": "4"}, {"proj_a": "1"}))
    assert len(world.inbox.messages) == 1
    assert "Top line items" not in str(payload(world.inbox.messages[0])["blocks"])


def test_organization_spike(world: World) -> None:
    """The organization total has its own spike rule (project filters do not apply to it), with line items
    summed over projects."""
    items = {("proj_a", "x"): "2", ("proj_b", "x"): "2"}
    world.alerter(AlertPolicy(exclude=["*"])).process(
        snapshot({"proj_a": "2", "proj_b": "2"}, {"proj_a": "1", "proj_b": "1"}, items)
    )
    assert [m.subject_id for m in world.inbox.messages] == ["organization"]
    assert "$4.00" in str(payload(world.inbox.messages[0])["blocks"])


def test_digest_waits_for_the_grace_then_comes_once(world: World, clock: FrozenClock) -> None:
    """The digest of yesterday is sent once the grace after midnight has passed, and only once."""
    yesterday = NOW.date() - dt.timedelta(days=1)
    world.ledger.replace_days([yesterday], [CostRow(yesterday, "proj_a", None, D("12.5"))], NOW)
    alerter = world.alerter(AlertPolicy(), digest_grace=dt.timedelta(hours=21))
    quiet = snapshot({"proj_a": "1"}, {"proj_a": "1"})
    alerter.process(quiet)  # 20:00: still inside the 21 h grace
    assert world.inbox.messages == []
    clock.current = NOW + dt.timedelta(hours=2)
    alerter.process(quiet)
    alerter.process(quiet)
    [digest] = world.inbox.messages
    assert digest.rule == "digest" and "$12.50" in str(payload(digest))


def test_alert_states_for_the_page() -> None:
    """The page gets one short state per project, several rules joined, the organization left out."""

    def make(rule: str, subject: str, ratio: str | None, level: str = "firing") -> Alert:
        return Alert(rule, subject, subject, "warning", D(1), D(1), D(0), D(ratio) if ratio else None, level)  # type: ignore[arg-type]

    states = alert_states(
        [
            make("spike", "p1", "4"),
            make("daily_budget", "p1", None),
            make("spike", "p2", None),
            make("monthly_budget", "p3", None, "forecast"),
            make("spike", "organization", "2"),
        ]
    )
    assert states == {"p1": "spike (4.0×), daily budget", "p2": "new spend", "p3": "monthly budget forecast"}


def test_build_alerter_picks_slack_or_the_log(tmp_path: Path, world: World) -> None:
    """With a webhook the alerter posts to Slack; without one it writes alerts to the log."""
    common = {"admin_key": KEY, "state_dir": tmp_path}
    metrics = SelfMetrics(CollectorRegistry())
    with_slack = build_alerter(
        load_settings(**common, slack_webhook_url="http://127.0.0.1:9/services/T/B/X", digest=True),
        world.conn,
        world.clock,
        metrics,
    )
    without = build_alerter(load_settings(**common), world.conn, world.clock, metrics)
    assert isinstance(with_slack._notifier, SlackNotifier)
    assert isinstance(without._notifier, LogNotifier)


def test_two_alerting_projects_make_one_line_item_request(world: World) -> None:
    """Line items for every due message come from one request, filtered to the alerting projects."""
    spending = {pid for pid, _ in world.api.org.line_item_totals(NOW.date())}
    spenders = sorted((p for p in world.api.org.projects if p.id in spending), key=lambda p: p.id)[:2]
    before = world.api.request_counts().get("/v1/organization/costs", 0)
    world.alerter(AlertPolicy(organization=False)).process(
        snapshot({p.id: "40" for p in spenders}, {p.id: "1" for p in spenders})
    )
    assert world.api.request_counts()["/v1/organization/costs"] == before + 1
    assert len(world.inbox.messages) == 2
    truth = world.api.org.line_item_totals(NOW.date())
    for project, message in zip(spenders, world.inbox.messages, strict=True):
        top = max((amount, item) for (pid, item), amount in truth.items() if pid == project.id)[1]
        assert top in str(payload(message)["blocks"])
    path, query = world.api.request_log[-1]
    assert path == "/v1/organization/costs"
    assert sorted(parse_qs(query)["project_ids"]) == sorted(p.id for p in spenders)


def test_pending_messages_go_out_while_the_api_is_down(world: World) -> None:
    """A message decided earlier is delivered by a cycle whose fetch failed (no new decisions are made)."""
    alerter = world.alerter(AlertPolicy(organization=False))
    world.inbox.down = True
    alerter.process(snapshot({"proj_a": "4"}, {"proj_a": "1"}))
    assert world.inbox.messages == []
    world.inbox.down = False
    alerter.deliver_pending()
    assert [m.subject_id for m in world.inbox.messages] == ["proj_a"]


def test_estimates_without_a_usual_judge_no_runaway_and_close_none() -> None:
    """Estimates whose usual rate is not known (too little usage history) give the decision no runaway figures at
    all, not an empty map that would close every open runaway."""
    young = Estimates(
        taken_at=NOW, rate={"proj_a": D(60)}, usual={}, models={"proj_a": []}, today={}, tokens={}, requests={},
        usual_known=False,
    )  # fmt: skip
    assert cycle_figures(None, young, {}).runaways is None
