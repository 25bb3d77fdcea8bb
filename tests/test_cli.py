"""The command line in-process: flags to settings, log formats, exit codes."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.cli import commands, flags, logs
from openai_cost_exporter.cli import main as cli
from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.errors import PushError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OPENAI_ADMIN_KEY", "OPENAI_BASE_URL", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_flags_become_settings(tmp_path: Path) -> None:
    """Given flags, alert flags and repeated --push-label end up in one settings object; absent flags do not."""
    args = cli.build_parser().parse_args(
        [
            "run",
            "--state-dir",
            str(tmp_path),
            "--spike-ratio",
            "3",
            "--min-usd",
            "5",
            "--push-label",
            "team=ml",
            "--push-label",
            "env=prod",
            "--line-items",
        ]
    )
    settings = flags.settings_from_args(args)
    assert settings.alerts.spike_ratio == Decimal(3) and settings.alerts.min_usd == Decimal(5)
    assert settings.push_labels == {"team": "ml", "env": "prod"}
    assert settings.line_items is True and settings.state_dir == tmp_path
    assert settings.interval == defaults.INTERVAL_SECONDS == 60.0  # not given: the default


def test_json_log_format(capsys: pytest.CaptureFixture[str]) -> None:
    """--log-format json writes one JSON object per line with time, level, logger and message."""
    logs.setup_logging("INFO", "json")
    logging.getLogger("openai_cost_exporter.test").warning("spend is %s", "up")
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry["level"] == "WARNING" and entry["message"] == "spend is up"
    assert entry["logger"] == "openai_cost_exporter.test" and "T" in entry["time"]


def test_exporter_errors_exit_1_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ExporterError escaping a command is one line on stderr and exit code 1."""

    def fail(_args: object) -> int:
        raise PushError("push to http://127.0.0.1:1/api/v1/import/prometheus failed: ConnectError")

    monkeypatch.setattr(commands, "dispatch", fail)
    assert cli.main(["run", "--once"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "push to" in err


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C outside the service loop exits with the conventional 130, without a traceback."""

    def interrupt(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "dispatch", interrupt)
    assert cli.main(["report"]) == 130


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["backfill", "--days", "0"], "between 1 and --retention-days (400)"),
        (["backfill", "--days", "401"], "between 1 and --retention-days (400)"),
        (["backfill", "--days", "500", "--retention-days", "450"], "between 1 and --retention-days (450)"),
        (["report", "--days", "400"], "between 1 and 366"),
    ],
)
def test_day_ranges_are_checked(
    command: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """backfill refuses day counts outside 1..the retention, report outside 1..366, with a configuration error
    (exit 2)."""
    assert cli.main([*command, "--state-dir", str(tmp_path)]) == 2
    assert said in capsys.readouterr().err


def test_settings_flags_refuse_a_setting_without_a_flag() -> None:
    """A command's list of settings naming no flag (a typo such as "listen_addr") fails at parser build time."""
    with pytest.raises(ValueError, match="listen_addr"):
        flags.add_settings_flags(argparse.ArgumentParser(), {"listen", "listen_addr"})


def test_settings_without_a_flag_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A command without a setting's flag still takes that setting from the environment (shared by all commands)."""
    monkeypatch.setenv("OPENAI_COST_EXPORTER_PUSH_URL", "http://127.0.0.1:1/api/v1/import/prometheus")
    args = cli.build_parser().parse_args(["report", "--state-dir", str(tmp_path)])
    assert not hasattr(args, "push_url")
    assert flags.settings_from_args(args).push_url == "http://127.0.0.1:1/api/v1/import/prometheus"


@pytest.mark.parametrize(
    "argv", [["run", "--once", "--push-ur", "http://x"], ["report", "--offlin"], ["demo", "--po", "1"]]
)
def test_flag_abbreviations_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A shortened flag (`--push-ur`) is an error with exit 2, not silently taken for the flag it starts."""
    with pytest.raises(SystemExit) as caught:
        cli.build_parser().parse_args(argv)
    assert caught.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
