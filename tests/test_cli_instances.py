"""One sender per state dir: a second `run` (or `backfill`) on a state dir in use refuses to start; readers do not."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, clean_env, cli_now, command, run_cli, run_once
from tests.stack import wait_until

START_TIMEOUT = 30.0  # seconds until the first cycle is done; about 1 s on the CI machine


@pytest.fixture
def org(now: dt.datetime) -> FakeOrg:
    return FakeOrg.generate(seed=3, project_count=8, clock=FrozenClock(now))


@pytest.fixture
def api(org: FakeOrg) -> Iterator[FakeAdminAPI]:
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as fake:
        yield fake


@pytest.fixture
def service(api: FakeAdminAPI, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `run` loop on tmp_path/state, its first cycle done; stopped with SIGTERM afterwards."""
    log = tmp_path / "service.txt"
    # No spend limits: their listings go on in the background and would count as the second run's requests.
    args = [
        "run",
        "--base-url",
        api.base_url,
        "--state-dir",
        str(tmp_path / "state"),
        "--listen",
        "",
        "--no-spend-limits",
    ]
    with log.open("wb") as err:  # a file, not a pipe: read with a deadline, never blocks
        proc = subprocess.Popen(command(*args, "--interval", "3600"), env=clean_env(now=cli_now(api.org)), stderr=err)

    def first_cycle_done() -> bool:
        assert proc.poll() is None, f"the service exited early with {proc.returncode}:\n{log.read_text()}"
        return "cycle ok" in log.read_text(encoding="utf-8", errors="replace")

    try:
        wait_until(first_cycle_done, START_TIMEOUT, "the first cycle", lambda: log.read_text(errors="replace"))
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_second_run_on_the_same_state_dir_exits_2_with_one_line(
    api: FakeAdminAPI, service: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """While a `run` holds the state dir, another `run` exits 2 with one line naming the state dir and the
    running process, and makes no request to the API."""
    before = len(api.request_log)
    result = run_once(api.base_url, tmp_path / "state", now=cli_now(api.org))
    assert result.returncode == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already running" in lines[0], result.stderr
    assert str(tmp_path / "state") in lines[0] and f"pid {service.pid}" in lines[0]
    assert len(api.request_log) == before
    assert "Traceback" not in result.output and ADMIN_KEY not in result.output


def test_backfill_beside_a_running_service_is_refused(
    api: FakeAdminAPI, service: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """`backfill` writes the ledger and pushes as the service does, so it refuses a state dir in use (exit 2)."""
    result = run_cli(
        "backfill",
        "--days",
        "3",
        "--base-url",
        api.base_url,
        "--state-dir",
        str(tmp_path / "state"),
        now=cli_now(api.org),
    )
    assert result.returncode == 2, result.output
    assert "already running" in result.stderr and "Traceback" not in result.output


def test_readers_work_beside_a_running_service(
    api: FakeAdminAPI, service: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """`report --offline` and `backtest` only read the state, so they run while the service holds the lock."""
    state = str(tmp_path / "state")
    report = run_cli("report", "--offline", "--days", "3", "--state-dir", state, now=cli_now(api.org))
    assert report.returncode == 0, report.output
    backtest = run_cli("backtest", "--days", "3", "--state-dir", state, now=cli_now(api.org))
    assert backtest.returncode == 0, backtest.output


def test_the_lock_goes_with_the_process(api: FakeAdminAPI, tmp_path: Path) -> None:
    """A SIGKILLed service leaves no stale lock: the next `run` on its state dir starts and succeeds."""
    # No spend limits: their listings go on in the background and would count as the second run's requests.
    args = [
        "run",
        "--base-url",
        api.base_url,
        "--state-dir",
        str(tmp_path / "state"),
        "--listen",
        "",
        "--no-spend-limits",
    ]
    log = tmp_path / "service.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(command(*args, "--interval", "3600"), env=clean_env(now=cli_now(api.org)), stderr=err)
    try:
        wait_until(lambda: "cycle ok" in log.read_text(errors="replace"), START_TIMEOUT, "the first cycle")
    finally:
        proc.kill()
        proc.wait(timeout=15)
    result = run_once(api.base_url, tmp_path / "state", now=cli_now(api.org))
    assert result.returncode == 0, result.output
