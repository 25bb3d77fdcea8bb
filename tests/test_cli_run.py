"""The CLI as a user runs it: `run` against the fake OpenAI organization, pushing into a real VictoriaMetrics."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openai_cost_exporter.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI, Faults
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.models import UNATTRIBUTED
from tests.clirun import ADMIN_KEY, clean_env, command, run_once
from tests.stack import VictoriaMetrics, free_port, require_binary

pytestmark = pytest.mark.stack


@pytest.fixture
def org() -> FakeOrg:
    # Frozen at the real current time: the exporter's "today" is the fake's, and today-so-far holds still.
    return FakeOrg.generate(seed=11, project_count=130, clock=FrozenClock(dt.datetime.now(dt.UTC)))


@pytest.fixture
def api(org: FakeOrg) -> Iterator[FakeAdminAPI]:
    with FakeAdminAPI(org, admin_key=ADMIN_KEY, faults=Faults(amount_format="mixed")) as fake:
        yield fake


def _latest_by_project(series: list[dict[str, object]], since_ms: int) -> dict[str, tuple[str, float]]:
    latest: dict[str, tuple[str, float]] = {}
    for item in series:
        metric = item["metric"]
        assert isinstance(metric, dict)
        points = [
            (ts, value)
            for ts, value in zip(item["timestamps"], item["values"], strict=True)  # type: ignore[call-overload]
            if ts >= since_ms
        ]
        if points:
            latest[metric["project_id"]] = (metric["project"], max(points)[1])
    return latest


def _expected_names(org: FakeOrg) -> dict[str, str]:
    names = {p.id: p.name if p.name is not None else p.id for p in org.projects}
    names[UNATTRIBUTED] = UNATTRIBUTED
    return names


def test_run_once_pushes_what_the_api_bills(
    api: FakeAdminAPI, org: FakeOrg, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """One cycle with >100 projects, archived ones, awkward names, string amounts and a null project_id lands in
    VictoriaMetrics with today's values and each closed day's values equal to the fake's sums."""
    result = run_once(api.base_url, tmp_path, "--push-url", vm.import_url, "--backfill-days", "45")
    assert result.returncode == 0, result.output
    assert ADMIN_KEY not in result.output and "Traceback" not in result.output
    counts = api.request_counts()
    assert counts["/v1/organization/projects"] >= 2  # 130 projects: two pages of 100
    assert counts["/v1/organization/costs"] >= 2  # 46 days: more than one page of 31 buckets
    vm.force_flush()
    today = org.clock.now().date()
    start_ms = int(dt.datetime.combine(today, dt.time(), dt.UTC).timestamp() * 1000)
    live = _latest_by_project(vm.export('openai_daily_cost_usd{job="openai_cost_exporter"}'), start_ms)
    truth = {pid or UNATTRIBUTED: amount for pid, amount in org.daily_totals(today).items()}
    names = _expected_names(org)
    assert truth and set(truth) <= set(live)
    for pid, (name, value) in live.items():
        assert value == pytest.approx(float(truth.get(pid, Decimal(0))), rel=1e-11), pid
        assert name == names[pid]
    assert any("\n" in name or '"' in name or "\\" in name for name, _ in live.values())
    assert any(p.archived and p.id in live for p in org.projects)
    # Closed days: one sample inside each day, equal to that day's sum.
    day = today - dt.timedelta(days=3)
    day_ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
    closed = {
        item["metric"]["project_id"]: [
            v for t, v in zip(item["timestamps"], item["values"], strict=True) if day_ms <= t < day_ms + 86_400_000
        ]
        for item in vm.export('openai_daily_cost_usd{job="openai_cost_exporter"}')
    }
    for pid, amount in org.daily_totals(day).items():
        # VictoriaMetrics keeps ~12 significant digits per block of a series (a shared decimal exponent), so a
        # long history read back can differ in the 12th digit; far below a cent. The pushed text itself is exact
        # (tests/test_collector.py).
        assert closed[pid or UNATTRIBUTED] == [pytest.approx(float(amount), rel=1e-11)]


def test_warm_cycle_makes_one_request(api: FakeAdminAPI, tmp_path: Path) -> None:
    """With names already in the state dir and no new project, a cycle asks for one costs page and nothing else."""
    assert run_once(api.base_url, tmp_path).returncode == 0
    before = sum(api.request_counts().values())
    result = run_once(api.base_url, tmp_path)
    assert result.returncode == 0, result.output
    assert sum(api.request_counts().values()) - before == 1
    assert "1 API requests" in result.stderr


def _wait_http(url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not become ready")
        time.sleep(0.05)  # waiting for another process to start serving, not for time to pass


def test_metrics_endpoint_parses_and_passes_promtool(api: FakeAdminAPI, tmp_path: Path) -> None:
    """`run --listen` serves /metrics that prometheus-client parses and `promtool check metrics` accepts, and
    SIGTERM stops it cleanly within seconds."""
    port = free_port()
    proc = subprocess.Popen(
        command("run", "--base-url", api.base_url, "--state-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}"),
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/readyz", time.monotonic() + 30)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        families = {family.name: family for family in text_string_to_metric_families(text)}
        assert {"openai_daily_cost_usd", "openai_daily_cost_baseline_usd", "openai_month_to_date_cost_usd"} <= set(
            families
        )
        assert len(families["openai_daily_cost_usd"].samples) > 100
        check = subprocess.run(
            [require_binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "Search Reranker" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert time.monotonic() - stopped_at < 10
    assert "received SIGTERM, stopping" in err
    assert ADMIN_KEY not in out + err and "Traceback" not in err


@pytest.mark.parametrize(
    "fault",
    [
        {"rate_limit_next": 2},
        {"server_error_next": 2},
        {"truncate_next": 1},
        {"not_found_next": 1},
    ],
    ids=["429-retry-after", "5xx", "truncated-json", "404-outage"],
)
def test_transient_faults_are_retried(api: FakeAdminAPI, tmp_path: Path, fault: dict[str, object]) -> None:
    """429 with Retry-After, 5xx, a truncated page and a 404 outage are retried: the cycle still succeeds."""
    api.faults.update(fault)
    result = run_once(api.base_url, tmp_path)
    assert result.returncode == 0, result.output
    assert "cycle ok" in result.stderr
    assert ADMIN_KEY not in result.output and "Traceback" not in result.output


def test_wrong_key_fails_with_one_clear_line(api: FakeAdminAPI, tmp_path: Path) -> None:
    """A rejected key ends the cycle with exit 1 and one line naming the problem; no traceback, no key."""
    wrong = "sk-admin-WRONG-key-0000000000000000"
    result = run_once(api.base_url, tmp_path, env={"OPENAI_ADMIN_KEY": wrong})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "401" in errors[0] and "admin key" in errors[0]
    assert wrong not in result.output and ADMIN_KEY not in result.output and "Traceback" not in result.output


def test_missing_scope_is_explained(api: FakeAdminAPI, tmp_path: Path) -> None:
    """A 403 names the api.usage.read scope."""
    api.faults.update({"forbidden": True})
    result = run_once(api.base_url, tmp_path)
    assert result.returncode == 1
    assert "api.usage.read" in result.stderr and "Traceback" not in result.output


def test_unreachable_victoria_metrics_is_one_line_and_retried_later(
    api: FakeAdminAPI, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """A push to a closed port fails the cycle with one line; the closed days stay pending and the next cycle
    with a reachable VictoriaMetrics delivers them."""
    dead = f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus"
    result = run_once(api.base_url, tmp_path, "--push-url", dead)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "push" in errors[0]
    assert "Traceback" not in result.output
    again = run_once(api.base_url, tmp_path, "--push-url", vm.import_url, "--push-label", "source=retry")
    assert again.returncode == 0, again.output
    assert "closed days pushed" in again.stderr and " 0 closed days pushed" not in again.stderr
    vm.force_flush()
    assert vm.export('openai_daily_cost_usd{source="retry"}')


def test_missing_key_is_a_config_error(tmp_path: Path) -> None:
    """Without any admin key the command exits 2 and says which variables to set."""
    result = run_once("http://127.0.0.1:9/v1", tmp_path, env={"OPENAI_ADMIN_KEY": ""})
    assert result.returncode == 2
    assert "OPENAI_ADMIN_KEY" in result.stderr and "Traceback" not in result.output
