"""State files written by older versions: a 0.1 outbox of Slack Block Kit payloads, incidents before the spike's."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.notify.messages import MessageContext
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.notify.slack import SlackNotifier
from openai_cost_exporter.rules import AlertPolicy, SpendFigures
from openai_cost_exporter.rules.decision import Figures, Incident, decide
from openai_cost_exporter.store.state import open_state
from tests.fake_slack import FakeSlack

NOW = dt.datetime(2026, 11, 28, 15, 0, tzinfo=dt.UTC)
#: What 0.1 queued for a spike: the Block Kit payload itself, no `kind`.
PAYLOAD_0_1 = {
    "text": ":chart_with_upwards_trend: Spend spike: Alpha (proj_a) at $40.00 today, 4.0x its baseline",
    "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "Spend spike: Alpha"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Today so far* $40.00 (baseline $10.00)"}},
    ],
}


def test_a_pending_0_1_payload_is_delivered_once_unchanged(tmp_path: Path) -> None:
    """A pending outbox row holding a 0.1 Block Kit payload is posted to Slack exactly as stored, once."""
    conn = open_state(tmp_path / "state.sqlite3")
    try:
        notes = Notifications(conn, FrozenClock(NOW))  # creates the outbox table, as 0.1 had it
        conn.execute(
            "INSERT INTO outbox (rule, subject_id, day, level, escalation, payload, created_at)"
            " VALUES ('spike', 'proj_a', '2026-11-28', 'firing', 0, ?, ?)",
            (json.dumps(PAYLOAD_0_1), NOW.timestamp() - 600),
        )
        with FakeSlack() as slack:
            notifier = SlackNotifier(slack.url, backoff=0)
            first = notes.deliver(notifier)
            second = notes.deliver(notifier)
            posts = slack.wait_for(1)
        assert (first.sent, first.failed, first.pending) == (1, 0, 0)
        assert (second.sent, second.pending) == (0, 0)
        assert [post.body for post in posts] == [PAYLOAD_0_1]
        assert len(slack.requests) == 1
    finally:
        conn.close()


def test_a_spike_incident_survives_a_restart_and_an_older_incidents_table_gains_its_columns(tmp_path: Path) -> None:
    """An incidents table from before the spike incidents (no `seen`, no `ratio`) gains them when opened; a spike
    incident kept by one process is what the next one decides from."""
    path = tmp_path / "state.sqlite3"
    conn = open_state(path)
    conn.execute(
        "CREATE TABLE incidents (rule TEXT NOT NULL, subject_id TEXT NOT NULL, opened TEXT NOT NULL, closed TEXT,"
        " PRIMARY KEY (rule, subject_id))"
    )
    conn.execute("INSERT INTO incidents VALUES ('runaway', 'proj_r', '2026-11-27', NULL)")
    conn.commit()
    figures = Figures(projects=[SpendFigures("proj_a", "Alpha", Decimal(500), Decimal(100), Decimal(0), Decimal(0))])
    try:
        notes = Notifications(conn, FrozenClock(NOW))
        state = notes.state(NOW.date())
        assert state.incidents == {"proj_r": Incident(dt.date(2026, 11, 27))}
        notes.keep(decide(figures, state, AlertPolicy(organization=False), NOW.date(), {}), lambda _: MessageContext())
    finally:
        conn.close()
    again = open_state(path)
    try:
        state = Notifications(again, FrozenClock(NOW)).state(NOW.date() + dt.timedelta(days=1))
        assert state.spikes == {"proj_a": Incident(NOW.date(), seen=NOW.date(), peak=Decimal(5))}
        tomorrow = decide(figures, state, AlertPolicy(organization=False), NOW.date() + dt.timedelta(days=1), {})
        assert tomorrow.decisions == []  # the same change the next day: the open incident, nothing said
    finally:
        again.close()
