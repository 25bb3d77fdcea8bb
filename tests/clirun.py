"""Running the exporter's CLI as a user does: a separate process, real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from openai_cost_exporter.core.clock import TEST_NO_BACKOFF_ENV, TEST_NOW_ENV
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.rules.runaway import median
from tests.moments import DEFAULT
from tests.stack import free_port, wait_until

ADMIN_KEY = "sk-admin-TESTKEY-never-printed-0123456789"


def clean_env(extra: Mapping[str, str] | None = None, *, now: dt.datetime | None = None) -> dict[str, str]:
    """The test's environment without any OpenAI / Slack / exporter variable of the developer's shell; the CLI's
    clock is frozen at `now` (clock.TEST_NOW_ENV), or at the suite's DEFAULT moment: never the real time."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "SLACK_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"))
    }
    env["OPENAI_ADMIN_KEY"] = ADMIN_KEY
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env[TEST_NO_BACKOFF_ENV] = "1"  # retries keep their attempts, not their waits (as conftest.py does in-process)
    env[TEST_NOW_ENV] = (DEFAULT if now is None else now).isoformat()
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str  # without the test-only variables' warnings (`without_test_warnings`)
    raw_stderr: str = ""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "openai_cost_exporter", *args]


def without_test_warnings(stderr: str) -> str:
    """`stderr` less the warnings every test process logs for its test-only variables (a user never sees them)."""
    return "".join(
        line
        for line in stderr.splitlines(keepends=True)
        if not (" WARNING " in line and (f"{TEST_NOW_ENV} is set" in line or f"{TEST_NO_BACKOFF_ENV} is set" in line))
    )


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, now: dt.datetime | None = None, timeout: float = 90
) -> Result:
    """Run one CLI command to completion; with `now`, its clock is frozen at that time (see `clean_env`)."""
    done = subprocess.run(
        command(*args), capture_output=True, text=True, env=clean_env(env, now=now), timeout=timeout, check=False
    )
    return Result(done.returncode, done.stdout, without_test_warnings(done.stderr), done.stderr)


def run_once(
    api_url: str, state_dir: Path, *extra: str, env: Mapping[str, str] | None = None, now: dt.datetime | None = None
) -> Result:
    """`run --once` against the fake API, no HTTP listener; pass `cli_now(org)` as `now`."""
    return run_cli(
        "run", "--once", "--base-url", api_url, "--state-dir", str(state_dir), "--listen", "", *extra, env=env, now=now
    )


@contextlib.contextmanager
def serving(api_url: str, state_dir: Path, *extra: str, now: dt.datetime, timeout: float = 30) -> Iterator[str]:
    """`run --listen` on a free port of 127.0.0.1 at `now`, once its first cycle is done (/readyz): its base URL,
    ending with a SIGTERM."""
    port = free_port()
    argv = command("run", "--base-url", api_url, "--state-dir", str(state_dir), "--listen", f"127.0.0.1:{port}", *extra)
    proc = subprocess.Popen(argv, env=clean_env(now=now), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def ready() -> bool:
        assert proc.poll() is None, f"the exporter exited early with {proc.returncode}"
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        return False

    try:
        wait_until(ready, timeout, "the exporter's /readyz")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)


def cli_now(org: FakeOrg) -> dt.datetime:
    """The time to freeze a CLI process's clock at, against `org`: the fake's own frozen time, so both agree on the
    UTC day and the hour (a test that wants a process later moves the fake's clock, or passes a later time)."""
    return org.clock.now()


def tagged(run: str, org: FakeOrg) -> str:
    """A `run` push label of its own for each moment of the calendar run: a module's VictoriaMetrics is shared."""
    return f"{run}-{org.clock.now():%Y%m%dT%H%M}"


def baseline_of(org: FakeOrg, project_id: str) -> Decimal:
    """The exporter's usual full day (without usage, the spike's baseline): the median of the 7 most recent days of
    the same kind (weekdays, or weekend days up to four weeks back) before the fake's today; no spend counts as 0."""
    return median([org.daily_total(day, project_id) for day in days_of_its_kind(org.clock.now().date())])


def days_of_its_kind(today: dt.date, count: int = 7, lookback: int = 28) -> list[dt.date]:
    """The `count` most recent days before `today` of its kind (weekdays, or weekend days), within `lookback`."""
    days = [today - dt.timedelta(days=n) for n in range(1, lookback + 1)]
    return [day for day in days if (day.weekday() >= 5) == (today.weekday() >= 5)][:count]


def set_today(org: FakeOrg, project_id: str, amount: Decimal) -> None:
    """Make a project's spend today exactly `amount` (its first line item carries it all)."""
    today = org.clock.now().date()
    for index, item in enumerate(org.project(project_id).line_items):
        org.set_cost(today, project_id, item, amount.quantize(Decimal("0.000001")) if index == 0 else Decimal(0))
