"""Running the exporter's CLI as a user does: a separate process, real sockets on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
