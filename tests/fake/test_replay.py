"""The corpus replay (fake/replay.py) is the live cycle: the same messages at the same moments, in one process."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from openai_cost_exporter.app import build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.corpus import Scenario, palette
from openai_cost_exporter.fake.replay import KEY, Replay, in_process_client, moments
from openai_cost_exporter.fake.scenarios import runaway, spike
from openai_cost_exporter.notify.messages import OutboxMessage

#: A Saturday of the corpus's calendar: a 4x spike day of a weekend-heavy project and a 10x runaway at noon.
SATURDAY = dt.date(2026, 10, 17)
Message = tuple[str, str, str, dt.date]  # (rule, subject_id, level, day)


class Inbox:
    """A notifier that keeps what Slack would get."""

    def __init__(self) -> None:
        self.sent: list[tuple[dt.datetime, Message]] = []
        self.now = dt.datetime.min

    def send(self, message: OutboxMessage) -> None:
        self.sent.append((self.now, (message.rule, message.subject_id, message.level, message.day)))


def _scenario() -> Scenario:
    incidents = (
        spike("Weekend Games", 12, "4"),
        runaway("Main Search", dt.datetime(2026, 10, 17, 11, 50, tzinfo=dt.UTC), 90, "10"),
    )
    return Scenario("check", "incident", SATURDAY, 1, palette()[:5], incidents=incidents)


def _moments(scenario: Scenario) -> list[dt.datetime]:
    return moments(scenario.first_moment, scenario.end_moment, [i.start for i in scenario.incidents[1:]])


def _replayed(scenario: Scenario) -> list[tuple[dt.datetime, Message]]:
    clock = FrozenClock()
    org, _ = scenario.organization(clock)
    replay = Replay(in_process_client(FakeAdminAPI(org, admin_key=KEY)), clock, load_settings(admin_key=KEY).alerts)
    try:
        return [(m.at, (m.rule, m.subject_id, m.level, m.day)) for m in replay.run(_moments(scenario))]
    finally:
        replay.close()


def _live(scenario: Scenario, state: Path) -> list[tuple[dt.datetime, Message]]:
    clock = FrozenClock()
    org, _ = scenario.organization(clock)
    inbox = Inbox()
    with FakeAdminAPI(org, admin_key=KEY) as api:
        settings = load_settings(base_url=api.base_url, admin_key=KEY, state_dir=state, listen="", spend_limits=False)
        exporter = build_exporter(settings, clock=clock)
        exporter.cycle._alerter._notifier = inbox  # type: ignore[union-attr]  # record what Slack would get
        try:
            for now in _moments(scenario):
                clock.current = inbox.now = now
                assert exporter.cycle.run_once().ok
        finally:
            exporter.close()
    return inbox.sent


def test_a_replayed_day_sends_what_the_live_cycle_sends(tmp_path: Path) -> None:
    """Over a day with a spike and a runaway, hour by hour and every 5 minutes around the runaway, the in-process
    replay decides the very messages (rule, project, level, day) the exporter's cycle over HTTP sends, when it does."""
    scenario = _scenario()
    replayed = _replayed(scenario)
    assert replayed == _live(scenario, tmp_path)
    assert replayed, "a day with a 4x spike and a 10x runaway sends something"


def test_the_labels_happen_in_the_organization() -> None:
    """A labelled spike multiplies the project's whole day and a runaway its rate for its window only."""
    scenario = _scenario()
    clock, plain_clock = FrozenClock(), FrozenClock()
    org, ids = scenario.organization(clock)
    plain, _ = Scenario("plain", "ordinary", SATURDAY, 1, palette()[:5]).organization(plain_clock)
    clock.current = plain_clock.current = dt.datetime.combine(SATURDAY, dt.time(23, 59), dt.UTC)
    games, search = ids["Weekend Games"], ids["Main Search"]
    assert org.daily_total(SATURDAY, games) == 4 * plain.daily_total(SATURDAY, games)
    hour = dt.datetime(2026, 10, 17, 12, tzinfo=dt.UTC)
    assert org.hourly_spend(search, hour) == 10 * plain.hourly_spend(search, hour)
    later = hour + dt.timedelta(hours=2)
    assert org.hourly_spend(search, later) == plain.hourly_spend(search, later)
