"""`backtest` through the CLI: a backfilled fake history with injected incident days, and a missing state dir.

The fake organization runs in-process on a fixed day (its numbers depend on the seed and the day), the CLI as a
subprocess whose clock is the fake's (OPENAI_COST_EXPORTER_TEST_NOW).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, run_cli

NOW = dt.datetime(2026, 11, 18, 15, tzinfo=dt.UTC)  # a Wednesday
TODAY = NOW.date()
#: Incident days (days before today, project name): weekdays and a Sunday, inside the 30 judged days (60 are
#: backfilled, so each judged day has its baseline window: seven days of its kind, weekend days four weeks back).
INCIDENTS = [(21, "Ranking"), (13, "Legal Review"), (6, "Checkout Assistant"), (3, "Ranking")]
#: How many times its usual spend a project spends on its incident day.
FACTOR = 5


@dataclass(frozen=True)
class Replayed:
    injected: set[tuple[str, str]]  # (day, project id)
    names: dict[str, str]  # project id -> name
    document: dict[str, Any]  # backtest --format json
    table: str  # backtest --format table
    tuned: dict[str, Any]  # backtest --format json --spike-ratio 2


def inject(org: FakeOrg) -> set[tuple[str, str]]:
    """Make each incident day's project spend FACTOR x what it spent (the first line item carries the extra)."""
    by_name = {project.name: project for project in org.projects}
    injected = set()
    for days_ago, name in INCIDENTS:
        day, project = TODAY - dt.timedelta(days=days_ago), by_name[name]
        item = project.line_items[0]
        cell = org.line_item_totals(day).get((project.id, item), Decimal(0))
        org.set_cost(day, project.id, item, cell + (FACTOR - 1) * org.daily_total(day, project.id))
        injected.add((day.isoformat(), project.id))
    return injected


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    org = FakeOrg.generate(seed=11, project_count=20, clock=FrozenClock(NOW))
    injected = inject(org)
    state = tmp_path_factory.mktemp("backtest")
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api:
        filled = run_cli("backfill", "--days", "60", "--base-url", api.base_url, "--state-dir", str(state), now=NOW)
        assert filled.returncode == 0, filled.output
    # Offline from here: the fake is gone, so an API call would fail.
    runs = {
        fmt: run_cli(
            "backtest", "--days", "30", "--format", fmt, "--state-dir", str(state), now=NOW, env={"COLUMNS": "200"}
        )
        for fmt in ("json", "table")
    }
    runs["tuned"] = run_cli(
        "backtest", "--days", "30", "--format", "json", "--spike-ratio", "2", "--state-dir", str(state), now=NOW
    )
    for result in runs.values():
        assert result.returncode == 0, result.output
    names = {p.id: p.name if p.name is not None else p.id for p in org.projects}
    yield Replayed(
        injected, names, json.loads(runs["json"].stdout), runs["table"].stdout, json.loads(runs["tuned"].stdout)
    )


def spikes(replayed: Replayed, document: dict[str, Any] | None = None) -> set[tuple[str, str]]:
    alerts = (replayed.document if document is None else document)["alerts"]
    return {(a["day"], a["project_id"]) for a in alerts if a["rule"] == "spike"}


def test_backtest_finds_every_injected_incident_day(replayed: Replayed) -> None:
    """Each injected (day, project) is a spike message on its day, and no other rule sends anything."""
    assert replayed.injected <= spikes(replayed)
    assert {a["rule"] for a in replayed.document["alerts"]} == {"spike"}
    assert replayed.document["skipped_days"] == []  # 60 days backfilled: every judged day has its window
    for day, pid in replayed.injected:
        assert day in replayed.table and pid in replayed.table


def test_backtest_lists_exactly_the_injected_incidents(replayed: Replayed) -> None:
    """Done when (issue 8): the backtest of a backfilled fake history lists exactly the injected incident days,
    with the spike ratio tuned to 2x. At the default 1.5x it shows what a user would tune away: one ordinary day
    of a $4-a-day project at 1.53x its usual day (3.5 spreads above it), the fake's day-to-day noise."""
    assert spikes(replayed, replayed.tuned) == replayed.injected
    default_extra = spikes(replayed) - replayed.injected
    assert len(default_extra) <= 1, default_extra
    for day, pid in default_extra:
        assert replayed.names[pid] == "Default project" and day == "2026-11-14", (day, pid)


def test_backtest_without_a_state_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A state dir that does not exist is one line on stderr and exit 2, and is not created."""
    missing = tmp_path / "nowhere"
    result = run_cli("backtest", "--days", "7", "--state-dir", str(missing))
    assert result.returncode == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert str(missing) in result.stderr and "does not exist" in result.stderr
    assert not missing.exists()


def test_backtest_without_a_state_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A state dir without a state file is one line on stderr and exit 2, and no state file is created."""
    result = run_cli("backtest", "--days", "7", "--state-dir", str(tmp_path))
    assert result.returncode == 2, result.output
    assert result.stderr.count("\n") == 1 and "backfill" in result.stderr
    assert list(tmp_path.iterdir()) == []
