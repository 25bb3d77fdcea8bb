"""One sender per state dir: a second `run` (or `backfill`) on a state dir in use refuses to start (exit 2), an
overlapping `run --once` skips its turn (exit 75); readers do not."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_cost_exporter.cli.main import EXIT_SKIPPED
from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.http import Response
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.store.state import lock_state
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
    """While a `run` holds the state dir, another `run` (a second service) exits 2 with one line naming the state dir
    and the running process, and makes no request to the API."""
    before = len(api.request_log)
    state = str(tmp_path / "state")
    result = run_cli("run", "--base-url", api.base_url, "--state-dir", state, "--listen", "", now=cli_now(api.org))
    assert result.returncode == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already running" in lines[0], result.stderr
    assert state in lines[0] and f"pid {service.pid}" in lines[0]
    assert len(api.request_log) == before
    assert "Traceback" not in result.output and ADMIN_KEY not in result.output


def test_run_once_beside_a_running_service_skips_its_turn(
    api: FakeAdminAPI, service: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """`run --once` beside a running service skips (75) with one line naming the service's pid, asking nothing."""
    before = len(api.request_log)
    result = run_once(api.base_url, tmp_path / "state", now=cli_now(api.org))
    assert result.returncode == EXIT_SKIPPED, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"openai-cost-exporter: another run (pid {service.pid}) holds the state dir {tmp_path / 'state'}; skipped"
    )
    assert len(api.request_log) == before


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


class GatedAPI(FakeAdminAPI):
    """The fake Admin API holding every API request until `gate` is set; `waiting` counts the requests held."""

    def __init__(self, org: FakeOrg) -> None:
        super().__init__(org, admin_key=ADMIN_KEY)
        self.gate = threading.Event()
        self.waiting = 0

    def handle(self, method: str, target: str, authorization: str | None, body: bytes) -> Response:
        self.waiting += 1
        self.gate.wait(60)
        return super().handle(method, target, authorization, body)


def test_overlapping_run_once_skips_with_exit_75_and_one_line(org: FakeOrg, tmp_path: Path) -> None:
    """Two overlapping `run --once` on one state dir (cron every minute, a long cycle): the first runs to its end,
    the second exits 75 (EX_TEMPFAIL) with one line saying it skipped."""
    state = tmp_path / "state"
    api = GatedAPI(org)
    with api:
        argv = command("run", "--once", "--base-url", api.base_url, "--state-dir", str(state), "--listen", "")
        log = tmp_path / "first.txt"
        with log.open("wb") as err:
            first = subprocess.Popen(argv, env=clean_env(now=cli_now(org)), stderr=err)
        try:
            # A request held at the gate: the first run is inside its cycle, so it holds the state dir.
            wait_until(lambda: api.waiting > 0 or first.poll() is not None, START_TIMEOUT, "the first run's cycle")
            assert first.poll() is None, log.read_text()
            second = run_once(api.base_url, state, now=cli_now(org))
        finally:
            api.gate.set()
            first.wait(timeout=60)
    assert second.returncode == EXIT_SKIPPED == 75, second.output
    (line,) = second.stderr.strip().splitlines()
    assert line == f"openai-cost-exporter: another run (pid {first.pid}) holds the state dir {state}; skipped"
    assert first.returncode == 0, log.read_text()
    assert "Traceback" not in second.output and ADMIN_KEY not in second.output


def test_run_once_beside_a_held_lock_skips_and_runs_once_it_is_released(api: FakeAdminAPI, tmp_path: Path) -> None:
    """Held the way the exporter holds it (lock_state), the state dir makes `run --once` skip (75, no request);
    released, the next `run --once` runs: nothing is left behind that needs a person."""
    state = tmp_path / "state"
    lock = lock_state(state / defaults.STATE_FILE)
    try:
        skipped = run_once(api.base_url, state, now=cli_now(api.org))
    finally:
        lock.close()
    assert skipped.returncode == EXIT_SKIPPED, skipped.output
    assert skipped.stderr.strip().endswith(f"holds the state dir {state}; skipped")
    assert api.request_log == []
    assert run_once(api.base_url, state, now=cli_now(api.org)).returncode == 0


def test_a_daemon_run_beside_a_held_lock_still_exits_2(api: FakeAdminAPI, tmp_path: Path) -> None:
    """Only `run --once` skips: a service (`run` without --once) finding the state dir held is a second service, a
    mistake a person must fix, so it exits 2 with its one line."""
    state = tmp_path / "state"
    lock = lock_state(state / defaults.STATE_FILE)
    try:
        result = run_cli(
            "run", "--base-url", api.base_url, "--state-dir", str(state), "--listen", "", now=cli_now(api.org)
        )
    finally:
        lock.close()
    assert result.returncode == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "already running" in line and str(state) in line
