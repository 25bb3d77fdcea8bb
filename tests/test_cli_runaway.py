"""The runaway alert through the CLI: `run --once` against the fake organization, alerts to a fake Slack."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, run_once
from tests.fake_slack import FakeSlack
from tests.moments import DEFAULT, SATURDAY_1000, SUNDAY_1300

#: A Wednesday: an ordinary weekday after a quiet weekend.
DAY = dt.date(2026, 11, 25)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def runaway_posts(slack: FakeSlack) -> list[str]:
    texts = [json.dumps(post.body) for post in slack.posts]
    return [text for text in texts if "Runaway spend" in text]


@pytest.mark.parametrize("clock_time", [dt.time(0, 20), dt.time(6, 0), dt.time(23, 50)], ids=str)
def test_a_runaway_is_posted_once_in_the_first_cycle(slack: FakeSlack, tmp_path: Path, clock_time: dt.time) -> None:
    """A project at 10x its rate for 40 minutes gets one runaway message in the first cycle, saying "estimate";
    a batch peak happening now, a large steady spender and a small project at 20x under the floor get none."""
    now = dt.datetime.combine(DAY, clock_time, dt.UTC)
    clock = FrozenClock(now)
    # The batch peak is inside the last 60 minutes (the hour that began 30 minutes ago, or the one before).
    peak = (now - dt.timedelta(minutes=30)).hour
    org = FakeOrg.generate(
        seed=5, project_count=12, clock=clock, rhythm_projects=True, runaway_project=True, batch_peak_hour=peak
    )
    assert org.tiny_tool_project_id is not None and org.agent_loop_project_id is not None
    org.start_runaway(org.tiny_tool_project_id, Decimal(20), now - dt.timedelta(minutes=40))
    env = {"SLACK_WEBHOOK_URL": slack.url}
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api:
        first = run_once(api.base_url, tmp_path, env=env, now=now)
        assert first.returncode == 0, first.output
        [message] = runaway_posts(slack)
        assert "Agent Loop" in message and "estimate" in message and "o3-2025-04-16" in message
        for quiet in ("Nightly Batch", "Steady Search", "Tiny Tool"):
            assert quiet not in " ".join(json.dumps(post.body) for post in slack.posts), quiet
        second = run_once(api.base_url, tmp_path, env=env, now=now + dt.timedelta(minutes=5))
        assert second.returncode == 0, second.output
    assert len(runaway_posts(slack)) == 1


def test_metrics_keep_estimates_apart_from_billed_costs(tmp_path: Path) -> None:
    """Estimates have their own metric names; a key without usage access still gets billed figures, with one line."""
    now = dt.datetime.combine(DAY, dt.time(15, 0), dt.UTC)
    org = FakeOrg.generate(seed=5, project_count=12, clock=FrozenClock(now), runaway_project=True)
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api:
        api.faults.update({"usage_forbidden": True})
        result = run_once(api.base_url, tmp_path, now=now)
        second = run_once(api.base_url, tmp_path, now=now)
    assert result.returncode == 0, result.output
    assert result.stderr.count("usage endpoints refused") == 1
    assert "cycle ok" in result.stderr and "cycle ok" in second.stderr


@pytest.mark.parametrize("now", [SATURDAY_1000, SUNDAY_1300, DEFAULT], ids=["saturday", "sunday", "wednesday"])
def test_a_nine_day_old_organization_with_a_runaway_gets_one_message(
    slack: FakeSlack, tmp_path: Path, now: dt.datetime
) -> None:
    """On a fresh state dir, a 9-day-old organization (every project spending every day of its history, one at
    10x for 40 minutes) gets exactly one message, the runaway's, on a Saturday, a Sunday and a weekday: its first
    weekend is not seven $0 weekend days that make every project "new spend"."""
    clock = FrozenClock(now)
    org = FakeOrg.generate(
        seed=5, project_count=12, clock=clock, history_days=9, spike_project=False, runaway_project=True
    )
    for project in [None, *(p.id for p in org.projects)]:
        org.set_spend_limit(project, None)  # the hard limits' messages are another test's
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api:
        first = run_once(api.base_url, tmp_path, env={"SLACK_WEBHOOK_URL": slack.url}, now=now)
        assert first.returncode == 0, first.output
        clock.current = now + HOUR  # an hour on, for the organization too: the runaway goes on
        later = run_once(api.base_url, tmp_path, env={"SLACK_WEBHOOK_URL": slack.url}, now=clock.current)
        assert later.returncode == 0, later.output
    texts = [json.dumps(post.body) for post in slack.posts]
    assert len(texts) == 1, [text[:120] for text in texts]
    assert "Runaway spend" in texts[0] and "Agent Loop" in texts[0]
