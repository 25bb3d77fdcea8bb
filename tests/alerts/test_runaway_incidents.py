"""A runaway is one incident: one message across midnight, a message when it is over, its spike held."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.app import Exporter, build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.errors import APIUnavailable
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.notify.messages import OutboxMessage

KEY = "sk-admin-incidents"
EVENING = dt.datetime(2026, 11, 25, 23, 40, tzinfo=dt.UTC)  # a Wednesday


class Recorder:
    """A notifier that keeps (rule, level, subject) of what it is given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, message: OutboxMessage) -> None:
        self.sent.append((message.rule, message.level, message.subject_id))


@dataclass
class World:
    org: FakeOrg
    api: FakeAdminAPI
    clock: FrozenClock
    exporter: Exporter
    inbox: Recorder

    def cycle_at(self, moment: dt.datetime) -> None:
        self.clock.current = moment
        self.exporter.cycle.run_once()

    def sent(self, rule: str, subject: str) -> list[str]:
        return [level for r, level, s in self.inbox.sent if r == rule and s == subject]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = FrozenClock(EVENING)
    org = FakeOrg.generate(seed=7, project_count=20, clock=clock, runaway_project=True)
    with FakeAdminAPI(org, admin_key=KEY) as api:
        settings = load_settings(base_url=api.base_url, admin_key=KEY, state_dir=tmp_path, listen="")
        exporter = build_exporter(settings, clock=clock)
        inbox = Recorder()
        exporter.cycle._alerter._notifier = inbox  # type: ignore[union-attr]  # record what Slack would get
        try:
            yield World(org, api, clock, exporter, inbox)
        finally:
            exporter.close()


def agent(world: World) -> str:
    assert world.org.agent_loop_project_id is not None
    return world.org.agent_loop_project_id


def test_one_message_across_midnight_and_one_when_it_is_over(world: World) -> None:
    """A runaway that runs past UTC midnight is not announced again on the new day; when its rate falls back,
    one message says it is over."""
    pid = agent(world)
    world.cycle_at(EVENING)
    world.cycle_at(EVENING + dt.timedelta(minutes=25))  # 00:05, the next UTC day
    world.cycle_at(EVENING + dt.timedelta(minutes=40))
    assert world.sent("runaway", pid) == ["firing"]
    world.org.stop_runaway(pid, EVENING + dt.timedelta(minutes=40))
    world.cycle_at(EVENING + dt.timedelta(hours=2))
    world.cycle_at(EVENING + dt.timedelta(hours=2, minutes=10))
    assert world.sent("runaway", pid) == ["firing", "resolved"]


def test_the_spike_of_a_runaway_is_held_while_usage_cannot_be_read(world: World) -> None:
    """With the runaway open, a cycle whose usage stage fails does not let the same project's daily spike out."""
    pid = agent(world)
    noon = EVENING.replace(hour=20)
    world.org.start_runaway(pid, Decimal(10), noon - dt.timedelta(hours=8))  # billed too, after the cost lag
    world.cycle_at(noon)
    assert world.sent("runaway", pid) == ["firing"]
    world.api.faults.update({"usage_forbidden": True})
    world.cycle_at(noon + dt.timedelta(minutes=10))
    assert world.sent("spike", pid) == []
    assert world.exporter.cycle.snapshot is not None and world.exporter.cycle.snapshot.today.get(pid, 0) > 0


def test_the_runaway_is_judged_while_billed_costs_cannot_be_read(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runaway rule reads usage only: a costs endpoint that fails does not silence it."""

    def down(*_args: object, **_kwargs: object) -> None:
        raise APIUnavailable("GET /organization/costs failed after 3 attempts: HTTP 503")

    monkeypatch.setattr(world.exporter.cycle._source, "iter_costs", down)
    world.cycle_at(EVENING)
    assert world.sent("runaway", agent(world)) == ["firing"]


def test_one_failed_usage_stage_does_not_move_the_baseline(world: World) -> None:
    """The billed baseline keeps the usual shape of the day through one failed usage stage (no jump to a whole
    day and back)."""
    midday = EVENING.replace(hour=13)
    world.cycle_at(midday)
    before = world.exporter.cycle.snapshot
    world.api.faults.update({"usage_forbidden": True})
    world.cycle_at(midday + dt.timedelta(minutes=5))
    after = world.exporter.cycle.snapshot
    assert before is not None and after is not None
    assert after.baseline == before.baseline
