"""`backtest` lists what the live cycle sent: both over the same backfilled history of the fake organization.

The live cycle runs in this process every hour of four days (a Friday to a Monday) on an injected clock, against
the fake organization over loopback, from a fresh state dir (its first cycle backfills); then `backtest` runs
through the CLI over the state file those cycles left, and must list the messages the cycles queued.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import Counter
from decimal import Decimal
from pathlib import Path

from openai_cost_exporter.app import build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, run_cli

#: A Friday: the four days hold a weekend. Cycles at the end of each hour, the moments backtest judges.
START = dt.datetime(2026, 11, 20, 0, 59, 59, tzinfo=dt.UTC)
DAYS = 4
HOUR = dt.timedelta(hours=1)
SPIKE_DAY = dt.date(2026, 11, 21)  # the Saturday: one project at 4x all day
#: A 10x runaway on the Monday morning. It starts early in its hour: the past is judged from hourly usage, the
#: live cycle from the last minutes, so one starting late in an hour can escalate in one and not the other.
RUNAWAY = (dt.datetime(2026, 11, 23, 9, 5, tzinfo=dt.UTC), dt.datetime(2026, 11, 23, 12, 10, tzinfo=dt.UTC))


def live_messages(org: FakeOrg, clock: FrozenClock, state_dir: Path) -> Counter[tuple[str, str, str, str]]:
    """Every hour of the period, a cycle of the exporter; the messages it queued, from its outbox."""
    yesterday = START.date() - dt.timedelta(days=1)
    by_spend = sorted(org.projects, key=lambda p: org.daily_total(yesterday, p.id), reverse=True)
    running, spiking = by_spend[0].id, by_spend[1].id  # $4 an hour, and $58 a day
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api:
        settings = load_settings(base_url=api.base_url, admin_key=ADMIN_KEY, state_dir=state_dir, listen="")
        exporter = build_exporter(settings, clock=clock)
        try:
            for n in range(DAYS * 24):
                clock.current = START + n * HOUR
                if clock.current.date() == SPIKE_DAY and clock.current.hour == 0:
                    org.scale_today(spiking, Decimal(4))
                if RUNAWAY[0] <= clock.current < RUNAWAY[0] + HOUR:
                    org.start_runaway(running, Decimal(10), RUNAWAY[0])
                if RUNAWAY[1] <= clock.current < RUNAWAY[1] + HOUR:
                    org.stop_runaway(running, RUNAWAY[1])
                exporter.cycle.run_once()
        finally:
            exporter.close()
    with sqlite3.connect(state_dir / "state.sqlite3") as conn:
        rows = conn.execute("SELECT rule, subject_id, day, level FROM outbox WHERE rule != 'digest'").fetchall()
    return Counter(tuple(row) for row in rows)


def test_backtest_lists_exactly_what_the_live_cycle_sent(tmp_path: Path) -> None:
    """A Saturday spike day and a 10x runaway on the Monday morning: the cycles of the four days queue the spike
    (once, on its day), the runaway and its end, and `backtest --days 4` over their state lists the same."""
    clock = FrozenClock(START)
    org = FakeOrg.generate(seed=3, project_count=8, clock=clock, spike_project=False, history_days=120)
    for project in [None, *(p.id for p in org.projects)]:
        org.set_spend_limit(project, None)  # the hard limits are judged on the month, not replayed per day
    live = live_messages(org, clock, tmp_path)
    rules = Counter(rule for rule, subject, _, _ in live if subject != "organization")
    assert rules == {"spike": 1, "runaway": 2}, live  # the runaway's message and its end
    after = START.replace(hour=0, minute=30, second=0) + DAYS * dt.timedelta(days=1)
    result = run_cli("backtest", "--days", str(DAYS), "--format", "json", "--state-dir", str(tmp_path), now=after)
    assert result.returncode == 0, result.output
    replayed = Counter(
        (alert["rule"], alert["project_id"], alert["day"], alert["level"])
        for alert in json.loads(result.stdout)["alerts"]
    )
    assert replayed == live
