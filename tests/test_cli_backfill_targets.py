"""`backfill` up to the retention and per push target, through the CLI: the fake organization on loopback, real
VictoriaMetrics servers (one per push target)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import API_KEYS_EPOCH
from openai_cost_exporter.export.collector import day_sample_time
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, cli_now, run_cli, run_once, tagged
from tests.moments import DEFAULT
from tests.stack import VictoriaMetrics, victoria_metrics


@pytest.fixture
def api() -> Iterator[FakeAdminAPI]:
    org = FakeOrg.generate(seed=9, project_count=4, clock=FrozenClock(DEFAULT), spike_project=False)
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as fake:
        yield fake


def pushed_days(vm: VictoriaMetrics, run: str) -> set[dt.date]:
    """The closed days VictoriaMetrics holds a sample of (at the day's last second) for any project of `run`."""
    stamps = {ts for s in vm.export(f'openai_daily_cost_usd{{run="{run}"}}') for ts in s["timestamps"]}
    days = {dt.datetime.fromtimestamp(ts / 1000, dt.UTC).date() for ts in stamps}
    return {day for day in days if int(day_sample_time(day) * 1000) in stamps}


def test_backfill_fills_every_day_of_the_retention_across_the_key_epoch(
    api: FakeAdminAPI, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """`backfill --days 400 --api-keys` (the default retention; 366 was the old bar) succeeds and pushes every one
    of the 400 days, the window reaching back across the API-key epoch (by project before it, by key after)."""
    org, run = api.org, tagged("retention", api.org)
    today = org.clock.now().date()
    assert today - dt.timedelta(days=400) < API_KEYS_EPOCH < today
    result = run_cli(
        "backfill", "--days", "400", "--api-keys", "--push-url", vm.import_url, "--push-label", f"run={run}",
        "--base-url", api.base_url, "--state-dir", str(tmp_path), now=cli_now(org),
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "backfill done: 400 days" in result.stderr
    vm.force_flush()
    assert pushed_days(vm, run) == {today - dt.timedelta(days=n) for n in range(1, 401)}


def test_a_new_victoriametrics_gets_the_history_a_first_one_has(
    api: FakeAdminAPI, vm: VictoriaMetrics, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """After `run --once --backfill-days 30` into one VictoriaMetrics, `backfill --days 30` into a second one fills
    the second (what was pushed is remembered per target); into the first it pushes nothing again, unless
    `--repush`."""
    org, run = api.org, tagged("targets", api.org)
    state, label = tmp_path / "state", ("--push-label", f"run={run}")
    first = run_once(
        api.base_url, state, "--backfill-days", "30", "--push-url", vm.import_url, *label, now=cli_now(org)
    )
    assert first.returncode == 0, first.output
    days = {org.clock.now().date() - dt.timedelta(days=n) for n in range(1, 31)}

    def backfill(target: VictoriaMetrics, *extra: str) -> str:
        result = run_cli(
            "backfill", "--days", "30", "--push-url", target.import_url, *label, "--base-url", api.base_url,
            "--state-dir", str(state), *extra, now=cli_now(org),
        )  # fmt: skip
        assert result.returncode == 0, result.output
        return result.stderr

    with victoria_metrics(tmp_path_factory.mktemp("vm2")) as second:
        backfill(second)
        second.force_flush()
        assert pushed_days(second, run) == days
    assert ", 0 samples pushed" in backfill(vm)
    assert ", 0 samples pushed" not in backfill(vm, "--repush")
