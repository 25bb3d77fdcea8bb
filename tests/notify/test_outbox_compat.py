"""A state file written by version 0.1, whose outbox holds Slack Block Kit payloads rather than neutral records."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.notify.slack import SlackNotifier
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
