"""Revisions of a closed day reach VictoriaMetrics with and without dedup: up, down and to zero (issue 11)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.export.collector import day_sample_time
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, cli_now, run_once
from tests.stack import VictoriaMetrics, victoria_metrics

pytestmark = pytest.mark.stack

VM_REL = 1e-9


@pytest.fixture(scope="module", params=["1m", None], ids=["dedup-1m", "no-dedup"])
def vm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A real VictoriaMetrics deduplicating per minute (the README asks for dedup), and one without dedup."""
    with victoria_metrics(tmp_path_factory.mktemp("vm"), dedup=request.param) as server:
        yield server


@pytest.mark.parametrize("change", ["up", "down", "zero"])
def test_a_revised_day_reads_its_newest_value(
    vm: VictoriaMetrics, tmp_path: Path, change: str, now: dt.datetime
) -> None:
    """After a revision of yesterday (up, down, or to nothing), the day's value read back from VictoriaMetrics at the
    end of that day is the revised total, in every dedup mode (the old sample never wins)."""
    org = FakeOrg.generate(seed=3, project_count=12, clock=FrozenClock(now))
    yesterday = org.clock.now().date() - dt.timedelta(days=1)
    cells = org.line_item_totals(yesterday)
    pid = max((p for p, _ in cells if p is not None), key=lambda p: org.daily_total(yesterday, p))
    run = f"{change}-{id(vm)}"
    push = ("--push-url", vm.import_url, "--push-label", f"run={run}", "--no-usage")
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api:
        assert run_once(api.base_url, tmp_path, *push, now=cli_now(org)).returncode == 0
        old = org.daily_total(yesterday, pid)
        items = [item for p, item in cells if p == pid]
        for n, item in enumerate(items):
            if change == "zero":
                org.set_cost(yesterday, pid, item, Decimal(0))
            elif n == 0:
                # Half, in whole nanodollars (the fake takes no finer amount; half of an odd one has 10 decimals).
                half = (cells[(pid, item)] / 2).quantize(Decimal("1E-9"), rounding=ROUND_DOWN)
                shift = Decimal("77.125") if change == "up" else -half
                org.set_cost(yesterday, pid, item, cells[(pid, item)] + shift)
        new = org.daily_total(yesterday, pid)
        assert (new > old) if change == "up" else (new < old)
        second = run_once(api.base_url, tmp_path, *push, now=cli_now(org))
    assert second.returncode == 0, second.output
    assert " 1 closed days pushed" in second.stderr, second.output
    vm.force_flush()
    expr = f'last_over_time(openai_daily_cost_usd{{run="{run}",project_id="{pid}"}}[1d])'
    [series] = vm.query(expr, at=day_sample_time(yesterday) + 0.5)
    assert float(series["value"][1]) == pytest.approx(float(new), rel=VM_REL, abs=1e-9)
