"""Running the exporter's CLI as a user does: a separate process, real sockets on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from openai_cost_exporter.fake.org import FakeOrg

ADMIN_KEY = "sk-admin-TESTKEY-never-printed-0123456789"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any OpenAI / Slack / exporter variable of the developer's shell."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "SLACK_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"))
    }
    env["OPENAI_ADMIN_KEY"] = ADMIN_KEY
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "openai_cost_exporter", *args]


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 90) -> Result:
    """Run one CLI command to completion."""
    done = subprocess.run(
        command(*args), capture_output=True, text=True, env=clean_env(env), timeout=timeout, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_once(api_url: str, state_dir: Path, *extra: str, env: Mapping[str, str] | None = None) -> Result:
    """`run --once` against the fake API, no HTTP listener."""
    return run_cli(
        "run", "--once", "--base-url", api_url, "--state-dir", str(state_dir), "--listen", "", *extra, env=env
    )


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def late_today() -> dt.datetime:
    """20:00 UTC of the real current day: a frozen fake's today-so-far is most of a day, and the exporter
    (which runs on the system clock) agrees on the date."""
    return dt.datetime.combine(utc_today(), dt.time(20), dt.UTC)


def baseline_of(org: FakeOrg, project_id: str) -> Decimal:
    """The exporter's baseline: mean of the 7 complete UTC days before the fake's today (no spend counts as 0)."""
    today = org.clock.now().date()
    return sum((org.daily_total(today - dt.timedelta(days=n), project_id) for n in range(1, 8)), Decimal(0)) / 7


def set_today(org: FakeOrg, project_id: str, amount: Decimal) -> None:
    """Make a project's spend today exactly `amount` (its first line item carries it all)."""
    today = org.clock.now().date()
    for index, item in enumerate(org.project(project_id).line_items):
        org.set_cost(today, project_id, item, amount.quantize(Decimal("0.000001")) if index == 0 else Decimal(0))
