"""Each command's flags, run as a user would: its help lists only the settings it uses, and it refuses the others."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.clirun import run_cli

#: Per command: settings flags its help must list, and flags of settings it does not use (refused).
COMMANDS = {
    "run": (
        {"--base-url", "--listen", "--push-url", "--interval", "--digest", "--backfill-days", "--spike-ratio"},
        set(),
    ),
    "demo": (
        {"--port", "--interval", "--push-url", "--digest", "--spike-ratio", "--state-dir"},
        {"--base-url", "--listen"},
    ),
    "backfill": (
        {"--base-url", "--push-url", "--push-label", "--job", "--line-items", "--state-dir"},
        {"--listen", "--interval", "--backfill-days", "--digest", "--spike-ratio", "--notify-backoff"},
    ),
    "report": (
        {"--base-url", "--state-dir", "--line-items", "--baseline-days", "--config", "--log-level"},
        {"--listen", "--push-url", "--interval", "--digest", "--job", "--backfill-days", "--spike-ratio", "--usage"},
    ),
    "backtest": (
        {"--state-dir", "--spike-ratio", "--runaway-ratio", "--baseline-days", "--usage", "--config"},
        {"--listen", "--push-url", "--interval", "--digest", "--base-url", "--request-timeout", "--line-items"},
    ),
}


def help_flags(command: str) -> set[str]:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.output
    return set(re.findall(r"^\s+(--[a-z-]+)", result.stdout, re.MULTILINE))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_only_the_commands_own_settings(command: str) -> None:
    """`<command> --help` lists the settings flags the command uses and none of those it would ignore."""
    listed, ignored = COMMANDS[command]
    flags = help_flags(command)
    assert listed <= flags, sorted(listed - flags)
    assert not ignored & flags, sorted(ignored & flags)


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("demo", "--listen"),
        ("demo", "--base-url"),
        ("report", "--push-url"),
        ("report", "--interval"),
        ("backtest", "--digest"),
        ("backfill", "--listen"),
        ("backfill", "--backfill-days"),
    ],
)
def test_a_setting_the_command_ignores_is_an_error(command: str, flag: str) -> None:
    """A flag of a setting the command does not use is refused (exit 2, the flag named), not accepted and ignored."""
    required = ["--days", "3"] if command in {"backfill", "backtest"} else []
    value = [] if flag == "--digest" else ["127.0.0.1:9999"]
    result = run_cli(command, *required, flag, *value, timeout=30)
    assert result.returncode == 2
    assert f"unrecognized arguments: {flag}" in result.stderr
    assert "Traceback" not in result.output


def test_the_environment_still_sets_what_a_command_has_no_flag_for(tmp_path: Path) -> None:
    """Settings given by environment variables stay valid for every command: `report` accepts a listen address
    and an interval from the environment without a warning (they are shared with `run`)."""
    env = {"OPENAI_COST_EXPORTER_LISTEN": "127.0.0.1:1", "OPENAI_COST_EXPORTER_INTERVAL": "60"}
    result = run_cli("report", "--offline", "--state-dir", str(tmp_path), env=env, timeout=30)
    assert result.returncode == 2 and "no state file" in result.stderr  # got past the settings
    assert "unknown" not in result.stderr and "Traceback" not in result.output
