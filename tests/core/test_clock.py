"""The clocks: the test clock of a CLI process is frozen, or stepped through a file, and says so in the log."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import pytest

from openai_cost_exporter.core.clock import TEST_NOW_ENV, FileClock, FrozenClock, SystemClock, clock_from_env
from tests.clirun import run_cli
from tests.moments import SUNDAY_0020


def test_without_the_variable_the_clock_is_the_systems(caplog: pytest.LogCaptureFixture) -> None:
    """No TEST_NOW_ENV: the system clock, and no warning."""
    assert isinstance(clock_from_env({}), SystemClock)
    assert not caplog.records


def test_an_iso_time_freezes_the_clock_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    """An ISO time (without an offset: UTC) freezes the clock there, and one warning names the variable."""
    with caplog.at_level(logging.WARNING):
        clock = clock_from_env({TEST_NOW_ENV: "2026-11-29T00:20:00"})
    assert isinstance(clock, FrozenClock)
    assert clock.now() == clock.now() == SUNDAY_0020
    assert [r.getMessage() for r in caplog.records] == [
        f"{TEST_NOW_ENV} is set: this process's clock is a test clock, now 2026-11-29 00:20:00+00:00 (tests only)"
    ]


def test_a_file_clock_follows_each_new_time_written(tmp_path: Path) -> None:
    """`@FILE`: the clock reads the time in the file, and moves when the test writes a new one."""
    path = tmp_path / "now"
    path.write_text("2026-11-30T23:59:50+00:00", encoding="utf-8")
    clock = clock_from_env({TEST_NOW_ENV: f"@{path}"})
    assert isinstance(clock, FileClock)
    assert clock.now() == dt.datetime(2026, 11, 30, 23, 59, 50, tzinfo=dt.UTC)
    path.write_text("2026-12-01T00:00:20+00:00", encoding="utf-8")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1))  # a new time even within the file system's tick
    assert clock.now() == dt.datetime(2026, 12, 1, 0, 0, 20, tzinfo=dt.UTC)
    path.write_text("", encoding="utf-8")  # a writer between its truncate and its write: the time holds
    assert clock.now() == dt.datetime(2026, 12, 1, 0, 0, 20, tzinfo=dt.UTC)


def test_the_cli_warns_of_each_test_variable() -> None:
    """A CLI process with the test clock and no back-off logs one warning for each, so no deployment runs on them
    unnoticed."""
    result = run_cli("report", "--offline", "--state-dir", "/nonexistent-state-dir", now=SUNDAY_0020)
    warnings = [line for line in result.raw_stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 2, result.raw_stderr
    assert f"{TEST_NOW_ENV} is set" in warnings[0] or f"{TEST_NOW_ENV} is set" in warnings[1]
    assert any("OPENAI_COST_EXPORTER_TEST_NO_BACKOFF is set" in line for line in warnings)
    assert "2026-11-29 00:20:00" in result.raw_stderr
    assert " WARNING " not in result.stderr  # what the other tests read: a user never sees these lines
