"""Tests of the notification state: deduplication, escalation, the outbox and its delivery."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.errors import AuthError, NotifyError, StateError
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.notify import notifications as notifications_module
from openai_cost_exporter.notify.log_notifier import LogNotifier
from openai_cost_exporter.notify.messages import MessageContext, OutboxMessage, alert_record
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.notify.slack import SlackNotifier
from openai_cost_exporter.notify.slack_blocks import render
from openai_cost_exporter.rules import Alert, build_digest
from tests.fake_slack import FakeSlack

D = Decimal
DAY = dt.date(2026, 11, 28)


def spike(value: str = "4", subject_id: str = "proj_a", **overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "rule": "spike",
        "subject_id": subject_id,
        "subject_name": "Alpha",
        "severity": "warning",
        "value": D(value),
        "threshold": D("1.5"),
        "baseline": D(1),
        "ratio": D(value),
        "level": "firing",
    }
    return Alert(**{**values, **overrides})


class Contexts:
    """A context callable that counts its calls."""

    def __init__(self) -> None:
        self.calls: list[Alert] = []

    def __call__(self, alert: Alert) -> MessageContext:
        self.calls.append(alert)
        return MessageContext(line_items=[("gpt-4o", alert.value)])


class Recorder:
    """A notifier that records messages and fails while `failures` is positive."""

    def __init__(self, failures: int = 0, retry_after: float | None = None) -> None:
        self.sent: list[OutboxMessage] = []
        self.failures = failures
        self.retry_after = retry_after

    def send(self, message: OutboxMessage) -> None:
        if self.failures:
            self.failures -= 1
            raise NotifyError("down", retry_after=self.retry_after)
        self.sent.append(message)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


@pytest.fixture(params=["", None], ids=["implicit-transactions", "autocommit"])
def conn(request: pytest.FixtureRequest, db_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(db_path, isolation_level=request.param)
    yield connection
    connection.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> SelfMetrics:
    return SelfMetrics(registry)


@pytest.fixture
def notes(conn: sqlite3.Connection, clock: FrozenClock, metrics: SelfMetrics) -> Notifications:
    return Notifications(conn, clock, metrics)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(f"openai_cost_exporter_{name}", labels)


def test_one_message_per_day(notes: Notifications) -> None:
    """An alert is queued once; the same alert again on the same day queues nothing."""
    contexts = Contexts()
    (message,) = notes.decide([spike()], DAY, contexts)
    assert (message.rule, message.subject_id, message.day, message.level) == ("spike", "proj_a", DAY, "firing")
    assert not message.escalation
    assert render(message)["blocks"][0]["text"]["text"] == "Spend spike: Alpha"
    assert notes.decide([spike("5")], DAY, contexts) == []
    assert len(contexts.calls) == 1  # the context is built only for the message actually decided


def test_duplicate_alerts_in_one_batch(notes: Notifications) -> None:
    """The same alert twice in one batch is queued once (re-checked inside the transaction)."""
    assert len(notes.decide([spike(), spike("4.5")], DAY, Contexts())) == 1
    assert len(notes.pending()) == 1


def test_alerts_are_keyed_by_rule_subject_and_level(notes: Notifications) -> None:
    """Different rules, subjects and levels each get their own message."""
    alerts = [
        spike(),
        spike(subject_id="proj_b"),
        spike(rule="daily_budget", ratio=None),
        spike(rule="monthly_budget", level="forecast", ratio=None),
    ]
    assert len(notes.decide(alerts, DAY, Contexts())) == 4
    exceeded = spike(rule="monthly_budget", level="exceeded", severity="critical", ratio=None)
    assert [m.level for m in notes.decide([*alerts, exceeded], DAY, Contexts())] == ["exceeded"]


def test_escalation(notes: Notifications) -> None:
    """One more message when the value reaches twice the value last notified, measured from the last one."""
    notes.decide([spike("4")], DAY, Contexts())
    assert notes.decide([spike("7.99")], DAY, Contexts()) == []
    (escalated,) = notes.decide([spike("8")], DAY, Contexts())
    assert escalated.escalation
    assert render(escalated)["blocks"][0]["text"]["text"].startswith("Escalation: ")
    assert "now 8.0× the usual (first said at $4.00)" in str(render(escalated))
    assert notes.decide([spike("15")], DAY, Contexts()) == []
    assert len(notes.decide([spike("16")], DAY, Contexts())) == 1


def test_a_month_keyed_message_escalates_on_a_later_day(notes: Notifications) -> None:
    """A message keyed by its month (the spend limit's) is said once for the month, as the cycle decides from the
    stored state on any later day of it, and once more when its value doubles."""
    month = DAY.replace(day=1)
    limit = spike("100", rule="spend_limit", level="firing", since=month)
    assert len(notes.decide([limit], DAY - dt.timedelta(days=10), Contexts())) == 1
    assert notes.decide([limit], DAY, Contexts()) == []
    assert notes.decide([spike("199", rule="spend_limit", level="firing", since=month)], DAY, Contexts()) == []
    (escalated,) = notes.decide([spike("200", rule="spend_limit", level="firing", since=month)], DAY, Contexts())
    assert escalated.escalation


def test_escalation_factor_is_configurable(conn: sqlite3.Connection, clock: FrozenClock) -> None:
    """The escalation factor comes from the constructor."""
    notes = Notifications(conn, clock, escalation_factor=D(3))
    notes.decide([spike("4")], DAY, Contexts())
    assert notes.decide([spike("11")], DAY, Contexts()) == []
    assert len(notes.decide([spike("12")], DAY, Contexts())) == 1


def test_next_utc_day_is_a_new_message(notes: Notifications) -> None:
    """The same alert on the next UTC day is notified again."""
    notes.decide([spike()], DAY, Contexts())
    assert len(notes.decide([spike()], DAY + dt.timedelta(days=1), Contexts())) == 1


def test_restart_remembers(db_path: Path, clock: FrozenClock) -> None:
    """After a restart (new connection, new object) nothing is re-decided and the outbox is still there."""
    first = sqlite3.connect(db_path)
    Notifications(first, clock).decide([spike()], DAY, Contexts())
    first.close()
    second = sqlite3.connect(db_path)
    try:
        notes = Notifications(second, clock)
        assert notes.decide([spike()], DAY, Contexts()) == []
        (pending,) = notes.pending()
        assert render(pending)["blocks"][0]["text"]["text"] == "Spend spike: Alpha"
    finally:
        second.close()


def test_decision_and_outbox_are_one_transaction(
    notes: Notifications, conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while queuing leaves neither a remembered alert nor a message, so the next cycle retries."""
    real = alert_record

    def flaky(alert: Alert, ctx: MessageContext) -> dict[str, Any]:
        if alert.subject_id == "proj_b":
            raise RuntimeError("crash while queuing")
        return real(alert, ctx)

    monkeypatch.setattr(notifications_module, "alert_record", flaky)
    with pytest.raises(RuntimeError):
        notes.decide([spike(), spike(subject_id="proj_b")], DAY, Contexts())
    assert conn.execute("SELECT COUNT(*) FROM alert_notified").fetchone() == (0,)
    assert notes.pending() == []
    monkeypatch.setattr(notifications_module, "alert_record", real)
    assert len(notes.decide([spike(), spike(subject_id="proj_b")], DAY, Contexts())) == 2


def test_failing_context_still_notifies(notes: Notifications, caplog: pytest.LogCaptureFixture) -> None:
    """When the details cannot be fetched, the alert is still queued, without line items."""

    def broken(alert: Alert) -> MessageContext:
        raise AuthError("key rejected")

    (message,) = notes.decide([spike()], DAY, broken)
    assert len(render(message)["blocks"]) == 3  # no line items section
    assert "no details for the spike alert on proj_a" in caplog.text


def test_digest_once_per_day(notes: Notifications) -> None:
    """The digest is queued at most once per day."""
    digest = build_digest(DAY, {"p": D(3)}, {"p": D(1)}, {"p": "P"})
    message = notes.decide_digest(digest, DAY)
    assert message is not None and message.rule == "digest"
    assert render(message)["text"].endswith("$3.00")
    assert notes.decide_digest(digest, DAY) is None
    assert notes.decide_digest(digest, DAY + dt.timedelta(days=1)) is not None


def test_slack_failing_then_recovering_delivers_once(
    notes: Notifications, clock: FrozenClock, registry: CollectorRegistry
) -> None:
    """With Slack down, the message stays pending and backs off; once it is up it is delivered exactly once."""
    notes.decide([spike()], DAY, Contexts())
    with FakeSlack() as slack:
        notifier = SlackNotifier(slack.url, backoff=0)
        slack.fail_next(2)  # the send and its one in-call retry
        report = notes.deliver(notifier)
        assert (report.sent, report.failed, report.pending) == (0, 1, 1)
        assert sample(registry, "errors_total", stage="notify") == 1
        assert sample(registry, "notifications_pending") == 1
        (pending,) = notes.pending()
        assert pending.attempts == 1
        assert pending.next_attempt_at == clock.now() + dt.timedelta(seconds=30)

        clock.advance(dt.timedelta(seconds=29))
        assert notes.deliver(notifier).deferred == 1
        assert len(slack.requests) == 2  # nothing sent during the back-off

        clock.advance(dt.timedelta(seconds=1))
        assert notes.deliver(notifier).sent == 1
        assert notes.deliver(notifier).sent == 0
        posts = slack.wait_for(1)
    assert len(posts) == 1
    assert posts[0].body["blocks"][0]["text"]["text"] == "Spend spike: Alpha"
    assert sample(registry, "notifications_sent_total", rule="spike") == 1
    assert sample(registry, "notifications_pending") == 0


def test_retry_after_is_honoured(notes: Notifications, clock: FrozenClock) -> None:
    """A 429 with a long Retry-After defers the message by exactly that long."""
    notes.decide([spike()], DAY, Contexts())
    with FakeSlack() as slack:
        notifier = SlackNotifier(slack.url, backoff=0, max_retry_after=0)
        slack.rate_limit_next(1, retry_after=120)
        assert notes.deliver(notifier).failed == 1
        clock.advance(dt.timedelta(seconds=119))
        assert notes.deliver(notifier).deferred == 1
        clock.advance(dt.timedelta(seconds=1))
        assert notes.deliver(notifier).sent == 1
        assert [r.status for r in slack.requests] == [429, 200]


def test_backoff_doubles_up_to_a_cap(conn: sqlite3.Connection, clock: FrozenClock) -> None:
    """Each failure doubles the wait, up to the maximum."""
    notes = Notifications(conn, clock, backoff_seconds=10, max_backoff_seconds=50)
    notes.decide([spike()], DAY, Contexts())
    notifier = Recorder(failures=10)
    waits = []
    for _ in range(5):
        before = clock.now()
        notes.deliver(notifier)
        (pending,) = notes.pending()
        assert pending.next_attempt_at is not None
        waits.append((pending.next_attempt_at - before).total_seconds())
        clock.current = pending.next_attempt_at
    assert waits == [10, 20, 40, 50, 50]


def test_stops_at_first_failure_and_sends_oldest_first(notes: Notifications) -> None:
    """A failure ends the round (the target looks down); later rounds send the backlog oldest first."""
    notes.decide([spike(subject_id="proj_a")], DAY, Contexts())
    notes.decide([spike(subject_id="proj_b")], DAY, Contexts())
    notes.decide([spike(subject_id="proj_c")], DAY, Contexts())
    notifier = Recorder(failures=1)
    report = notes.deliver(notifier)
    assert (report.sent, report.failed, report.deferred, report.pending) == (0, 1, 0, 3)
    report = notes.deliver(notifier)  # the first is backing off; the others go, in order
    assert (report.sent, report.deferred) == (2, 1)
    assert [m.subject_id for m in notifier.sent] == ["proj_b", "proj_c"]


def test_unexpected_notifier_error_keeps_message(notes: Notifications) -> None:
    """An error that is not a NotifyError propagates and the message stays pending."""

    class Broken:
        def send(self, message: OutboxMessage) -> None:
            raise ValueError("bug")

    notes.decide([spike()], DAY, Contexts())
    with pytest.raises(ValueError, match="bug"):
        notes.deliver(Broken())
    assert len(notes.pending()) == 1


def test_plain_notify_error_uses_backoff(notes: Notifications, clock: FrozenClock) -> None:
    """A NotifyError without a retry_after backs off by the default first wait."""

    class Plain:
        def send(self, message: OutboxMessage) -> None:
            raise NotifyError("nope")

    notes.decide([spike()], DAY, Contexts())
    notes.deliver(Plain())
    (pending,) = notes.pending()
    assert pending.next_attempt_at == clock.now() + dt.timedelta(seconds=30)


def test_log_notifier_delivers(notes: Notifications, caplog: pytest.LogCaptureFixture) -> None:
    """Without Slack, messages are delivered to the log and leave the outbox."""
    notes.decide([spike()], DAY, Contexts())
    report = notes.deliver(LogNotifier(notifications_module.logger))
    assert (report.sent, report.pending) == (1, 0)
    assert "spike alert for proj_a: :warning: Spend spike: Alpha (proj_a)" in caplog.text


def test_works_without_metrics(conn: sqlite3.Connection, clock: FrozenClock) -> None:
    """Metrics are optional."""
    notes = Notifications(conn, clock)
    notes.decide([spike()], DAY, Contexts())
    assert notes.deliver(Recorder(failures=1)).failed == 1
    clock.advance(dt.timedelta(hours=1))
    assert notes.deliver(Recorder()).sent == 1


def test_nested_in_an_open_transaction(db_path: Path, clock: FrozenClock) -> None:
    """Inside the caller's open transaction the writes join it: a rollback by the caller undoes them."""
    conn = sqlite3.connect(db_path)
    try:
        notes = Notifications(conn, clock)
        conn.execute("CREATE TABLE other (x)")
        conn.execute("INSERT INTO other VALUES (1)")
        assert conn.in_transaction
        notes.decide([spike()], DAY, Contexts())
        conn.rollback()
        assert notes.pending() == []
    finally:
        conn.close()


def test_sqlite_errors_are_state_errors(conn: sqlite3.Connection, clock: FrozenClock) -> None:
    """SQLite failures surface as StateError."""
    notes = Notifications(conn, clock)
    conn.close()
    with pytest.raises(StateError, match="notification state"):
        notes.decide([spike()], DAY, Contexts())


def test_prune_forgets_old_days_but_keeps_undelivered_messages(notes: Notifications) -> None:
    """Retention removes old decisions and delivered messages, never a message still waiting for Slack."""
    old, recent = dt.date(2026, 1, 2), dt.date(2026, 11, 18)
    notes.decide([spike()], old, Contexts())
    notes.deliver(Recorder())
    notes.decide([spike(subject_id="proj_other")], old, Contexts())
    notes.decide([spike()], recent, Contexts())
    notes.deliver(Recorder(failures=1))
    notes.prune(dt.date(2026, 6, 1))
    assert [(m.subject_id, m.day) for m in notes.pending()] == [("proj_other", old), ("proj_a", recent)]
    assert notes.decide([spike()], old, Contexts())  # forgotten, so it would be said again
    assert not notes.decide([spike()], recent, Contexts())


class Doubtful:
    """A notifier whose sends fail in the given ways, in turn: "lost" (may have been delivered), "refused" (a 500)
    or "gone" (a 404: refused for good)."""

    def __init__(self, *outcomes: str) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def send(self, message: OutboxMessage) -> None:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "lost":
            raise NotifyError("no answer", maybe_delivered=True)
        if outcome == "refused":
            raise NotifyError("answered 500", status=500)
        if outcome == "gone":
            raise NotifyError("answered 404: no_service", status=404)


def test_the_attempt_is_committed_before_the_post(notes: Notifications, db_path: Path) -> None:
    """While the notifier sends, another connection already sees the message as 'sending', its attempt counted."""
    seen: list[tuple[Any, ...]] = []

    class Peek:
        def send(self, message: OutboxMessage) -> None:
            with sqlite3.connect(db_path) as other:
                seen.append(other.execute("SELECT attempts, sending_at IS NOT NULL FROM outbox").fetchone())

    notes.decide([spike()], DAY, Contexts())
    assert notes.deliver(Peek()).sent == 1
    assert seen == [(1, 1)]


def test_in_doubt_is_never_given_up_however_many_answers_are_lost(
    notes: Notifications, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A message in doubt is sent again after every lost answer, plain failures between them or not, until one is
    answered (issue 21: at least once, never given up for being in doubt)."""
    notes.decide([spike()], DAY, Contexts())
    notifier = Doubtful("lost", "refused", "refused", "lost", "lost")
    for _ in range(8):
        notes.deliver(notifier)
        clock.advance(dt.timedelta(hours=2))
    assert notifier.calls == 6
    assert notes.pending() == []
    assert "giving up" not in caplog.text


def test_a_given_up_message_leaves_with_retention(
    notes: Notifications, conn: sqlite3.Connection, clock: FrozenClock
) -> None:
    """A given-up message is not pending, and retention deletes it like a delivered one."""
    notes.decide([spike()], DAY, Contexts())
    notes.deliver(Doubtful("lost"))
    clock.advance(dt.timedelta(hours=1))
    notes.deliver(Doubtful("gone"))
    assert notes.pending() == [] and conn.execute("SELECT COUNT(*) FROM outbox").fetchone() == (1,)
    notes.prune(DAY + dt.timedelta(days=1))
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)


def test_an_outbox_of_0_1_gains_the_columns_of_delivery_safety(db_path: Path, clock: FrozenClock) -> None:
    """An outbox table with 0.1's columns gets `sending_at`, `in_doubt` and `given_up_at`; its row is still sent."""
    old = sqlite3.connect(db_path)
    old.execute(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, subject_id TEXT NOT NULL,"
        " day TEXT NOT NULL, level TEXT NOT NULL, escalation INTEGER NOT NULL, payload TEXT NOT NULL,"
        " created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_attempt_at REAL,"
        " delivered_at REAL)"
    )
    old.execute(
        "INSERT INTO outbox (rule, subject_id, day, level, escalation, payload, created_at)"
        " VALUES ('spike', 'proj_a', ?, 'firing', 0, ?, 0)",
        (DAY.isoformat(), json.dumps(alert_record(spike(), MessageContext()))),
    )
    old.commit()
    old.close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        notes = Notifications(conn, clock)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
        assert {"sending_at", "in_doubt", "given_up_at"} <= columns
        assert notes.deliver(Recorder()).sent == 1
    finally:
        conn.close()
