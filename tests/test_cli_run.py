"""The CLI as a user runs it: `run` against the fake OpenAI organization, pushing into a real VictoriaMetrics."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import UNATTRIBUTED
from openai_cost_exporter.fake.api import FakeAdminAPI, Faults
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, clean_env, cli_now, command, run_once
from tests.stack import VictoriaMetrics, free_port, require_binary, wait_until

pytestmark = pytest.mark.stack

START_TIMEOUT = 30.0  # seconds for `run --listen` to serve; about 1 s on the CI machine


@pytest.fixture
def org(now: dt.datetime) -> FakeOrg:
    # Frozen at the test's moment, which the CLI gets as its own (run_once(now=cli_now(org))): the exporter's
    # "today" is the fake's, and today-so-far holds still.
    return FakeOrg.generate(seed=11, project_count=130, clock=FrozenClock(now))


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


@pytest.mark.calendar
def test_run_once_pushes_what_the_api_bills(
    api: FakeAdminAPI, org: FakeOrg, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """One cycle with >100 projects, archived ones, awkward names, string amounts and a null project_id lands in
    VictoriaMetrics with today's values and each closed day's values equal to the fake's sums."""
    result = run_once(
        api.base_url, tmp_path, "--push-url", vm.import_url, "--backfill-days", "45", now=cli_now(api.org)
    )
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
    for project_id, amount in org.daily_totals(day).items():
        # VictoriaMetrics keeps ~12 significant digits per block of a series (a shared decimal exponent), so a
        # long history read back can differ in the 12th digit; far below a cent. The pushed text itself is exact
        # (tests/export/test_collector.py).
        assert closed[project_id or UNATTRIBUTED] == [pytest.approx(float(amount), rel=1e-11)]


@pytest.mark.calendar
def test_warm_cycle_makes_one_costs_request_and_two_per_usage_endpoint(api: FakeAdminAPI, tmp_path: Path) -> None:
    """With names and usage history in the state dir, a cycle asks for one costs page and two pages of each usage
    endpoint (the last complete hour and this one; the recent window's minutes), never the history again (spend
    limits, listed in the background, are off here: tests/test_cli_keys.py covers them)."""
    assert run_once(api.base_url, tmp_path, "--no-spend-limits", now=cli_now(api.org)).returncode == 0
    before = api.request_counts()
    result = run_once(api.base_url, tmp_path, "--no-spend-limits", now=cli_now(api.org))
    assert result.returncode == 0, result.output
    after = api.request_counts()
    assert {path: after[path] - before.get(path, 0) for path in after if after[path] != before.get(path, 0)} == {
        "/v1/organization/costs": 1,
        "/v1/organization/usage/completions": 2,
        "/v1/organization/usage/embeddings": 2,
    }
    assert "5 API requests" in result.stderr


#: Run as `python -c PROBE ARGS...`: the CLI, then the heavy optional packages it loaded, as its last stdout line.
#: click is hidden, as on a user's machine: with it installed (import-linter, in the test extra, brings it),
#: `import httpx` loads its own command line, rich included.
PROBE = (
    "import atexit, sys\n"
    "sys.modules['click'] = None\n"
    "from openai_cost_exporter.cli.main import main\n"
    "heavy = ('genai_prices', 'rich', 'slack_sdk', 'yaml')\n"
    "atexit.register(lambda: print('loaded:', *sorted(m for m in heavy if m in sys.modules)))\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize(("extra", "loaded"), [(["--no-usage"], []), ([], ["genai_prices"])])
def test_a_cycle_loads_only_the_packages_it_uses(
    api: FakeAdminAPI, tmp_path: Path, extra: list[str], loaded: list[str]
) -> None:
    """Without a webhook, a config file or a report, `run --once` loads neither slack_sdk, YAML nor rich, and
    genai-prices only with usage estimates on: a few MB and ~0.15 s of start-up each (issue 12)."""
    args = ["run", "--once", "--base-url", api.base_url, "--state-dir", str(tmp_path), "--listen", "", *extra]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args, "--no-spend-limits"],
        capture_output=True,
        text=True,
        env=clean_env(now=cli_now(api.org)),
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["loaded:", *loaded]


def _wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    """Wait (at most START_TIMEOUT) for `url` to answer 200; fail at once if the process exits."""

    def ready() -> bool:
        assert proc.poll() is None, f"the exporter exited early with {proc.returncode}"
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(url, timeout=2).status_code == 200
        return False

    wait_until(ready, START_TIMEOUT, url)


def test_metrics_endpoint_parses_and_passes_promtool(api: FakeAdminAPI, tmp_path: Path) -> None:
    """`run --listen` serves /metrics that prometheus-client parses and `promtool check metrics` accepts, and
    SIGTERM stops it cleanly within seconds."""
    port = free_port()
    proc = subprocess.Popen(
        command("run", "--base-url", api.base_url, "--state-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}"),
        env=clean_env(now=cli_now(api.org)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
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
def test_transient_faults_are_retried(api: FakeAdminAPI, tmp_path: Path, fault: dict[str, int]) -> None:
    """429 with Retry-After, 5xx, a truncated page and a 404 outage are retried: each fault fires, the request it
    failed is asked again, and the cycle still succeeds."""
    api.faults.update(fault)
    result = run_once(api.base_url, tmp_path, now=cli_now(api.org))
    assert result.returncode == 0, result.output
    assert "cycle ok" in result.stderr
    assert dict(api.faults_fired) == fault  # every failure was served, none left over
    # The first requests of a fresh state dir are distinct, so each repeat is a retry of a failed one.
    repeats = sum(times - 1 for times in Counter(api.request_log).values())
    assert repeats == sum(fault.values()), api.request_log
    assert ADMIN_KEY not in result.output and "Traceback" not in result.output


def test_retries_are_logged_with_endpoint_attempt_wait_and_error(api: FakeAdminAPI, tmp_path: Path) -> None:
    """A retried 5xx is one warning naming the path, the attempt, the wait and the error; stamina's bare
    `stamina.retry_scheduled` line is gone."""
    api.faults.update({"server_error_next": 1})
    result = run_once(api.base_url, tmp_path, now=cli_now(api.org))
    assert result.returncode == 0, result.output
    retries = [line for line in result.stderr.splitlines() if ": attempt 2 after " in line]
    assert len(retries) == 1, result.stderr
    assert " WARNING " in retries[0] and "GET /organization/" in retries[0]
    assert " s wait (attempt 1 failed: HTTP 5" in retries[0]
    assert "stamina.retry_scheduled" not in result.stderr and ADMIN_KEY not in result.output


def test_a_misspelled_environment_variable_is_warned_about(api: FakeAdminAPI, tmp_path: Path) -> None:
    """`OPENAI_COST_EXPORTER_INTERVALL` gives one start-up warning naming it and the variable meant."""
    env = {"OPENAI_COST_EXPORTER_INTERVALL": "5"}
    result = run_once(api.base_url, tmp_path, env=env, now=cli_now(api.org))
    assert result.returncode == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "OPENAI_COST_EXPORTER_INTERVALL" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0], result.stderr
    assert "did you mean OPENAI_COST_EXPORTER_INTERVAL?" in warnings[0]


def test_wrong_key_fails_with_one_clear_line(api: FakeAdminAPI, tmp_path: Path) -> None:
    """A rejected key ends `run --once` with exit 2 (a person must act, not a restart) and one line naming the
    problem; no traceback, no key."""
    wrong = "sk-admin-WRONG-key-0000000000000000"
    result = run_once(api.base_url, tmp_path, env={"OPENAI_ADMIN_KEY": wrong}, now=cli_now(api.org))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "401" in errors[0] and "admin key" in errors[0]
    assert wrong not in result.output and ADMIN_KEY not in result.output and "Traceback" not in result.output


def test_missing_scope_is_explained(api: FakeAdminAPI, tmp_path: Path) -> None:
    """A 403 names the api.usage.read scope."""
    api.faults.update({"forbidden": True})
    result = run_once(api.base_url, tmp_path, now=cli_now(api.org))
    assert result.returncode == 1
    assert "api.usage.read" in result.stderr and "Traceback" not in result.output


def test_unreachable_victoria_metrics_is_one_line_and_retried_later(
    api: FakeAdminAPI, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """A push to a closed port fails the cycle with one line; the closed days stay pending and the next cycle
    with a reachable VictoriaMetrics delivers them."""
    dead = f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus"
    result = run_once(api.base_url, tmp_path, "--push-url", dead, now=cli_now(api.org))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "push" in errors[0]
    assert "Traceback" not in result.output
    again = run_once(
        api.base_url, tmp_path, "--push-url", vm.import_url, "--push-label", "source=retry", now=cli_now(api.org)
    )
    assert again.returncode == 0, again.output
    assert "closed days pushed" in again.stderr and " 0 closed days pushed" not in again.stderr
    vm.force_flush()
    assert vm.export('openai_daily_cost_usd{source="retry"}')


def test_missing_key_is_a_config_error(tmp_path: Path) -> None:
    """Without any admin key the command exits 2 and says which variables to set."""
    result = run_once("http://127.0.0.1:9/v1", tmp_path, env={"OPENAI_ADMIN_KEY": ""})
    assert result.returncode == 2
    assert "OPENAI_ADMIN_KEY" in result.stderr and "Traceback" not in result.output


def test_run_once_at_a_fake_midnight_pushes_that_day(vm: VictoriaMetrics, tmp_path: Path) -> None:
    """With the fake frozen at 23:59:30 of a day and the CLI's clock at 23:59:55 of that day, one cycle pushes that
    day's figures as today's and only the days before it as closed days."""
    day = dt.date(2026, 11, 24)
    fake_now = dt.datetime.combine(day, dt.time(23, 59, 30), dt.UTC)
    org = FakeOrg.generate(seed=12, project_count=15, clock=FrozenClock(fake_now))
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api:
        # 5 s before midnight, frozen there: the cycle is the day's last.
        result = run_once(
            api.base_url, tmp_path, "--push-url", vm.import_url, "--push-label", "run=midnight",
            now=fake_now + dt.timedelta(seconds=25),
        )  # fmt: skip
    assert result.returncode == 0, result.output
    vm.force_flush()
    series = vm.export('openai_daily_cost_usd{run="midnight"}')
    day_ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
    live = _latest_by_project(series, day_ms + 86_400_000)  # no timestamp: stamped on receipt, after that day
    truth = {pid or UNATTRIBUTED: float(amount) for pid, amount in org.daily_totals(day).items()}
    assert truth and {pid: value for pid, (_, value) in live.items() if value} == pytest.approx(truth, rel=1e-11)
    closed = {ts // 86_400_000 * 86_400_000 for item in series for ts in item["timestamps"] if ts < day_ms}
    assert max(closed) == day_ms - 86_400_000  # the day before is the last closed day, that day is not closed
    assert not [ts for item in series for ts in item["timestamps"] if day_ms <= ts < day_ms + 86_400_000]
