"""The command line: `run`, `demo`, `backfill`, `report` and `fake-api`.

Every settings flag has an environment variable (see config.py); flags win over the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import prometheus_client

from openai_cost_exporter import __version__
from openai_cost_exporter.config import Settings, load_settings
from openai_cost_exporter.errors import ConfigError, ExporterError, StateError

log = logging.getLogger(__name__)

#: flag -> (settings field, type, help). Each flag's variable is OPENAI_COST_EXPORTER_<FIELD> unless noted.
SETTINGS_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--config": ("config", Path, "TOML or YAML settings file (alert policy, budgets, overrides)"),
    "--base-url": (
        "base_url",
        str,
        "OpenAI API base URL [OPENAI_BASE_URL] (default https://api.openai.com/v1)",
    ),
    "--request-timeout": ("request_timeout", float, "seconds per API request (default 30)"),
    "--listen": (
        "listen",
        str,
        "HOST:PORT for /metrics and the spend page; '' disables (default 0.0.0.0:9876)",
    ),
    "--push-url": (
        "push_url",
        str,
        "VictoriaMetrics import URL, e.g. http://localhost:8428/api/v1/import/prometheus",
    ),
    "--job": ("job", str, "job label added to pushed samples (default openai_cost_exporter)"),
    "--interval": ("interval", float, "seconds between cycles (default 300)"),
    "--state-dir": (
        "state_dir",
        Path,
        "directory of the SQLite state (default ~/.local/state/openai-cost-exporter)",
    ),
    "--revision-days": (
        "revision_days",
        int,
        "closed days re-read every cycle for late revisions (default 2)",
    ),
    "--retention-days": ("retention_days", int, "days of history kept in the state (default 400)"),
    "--backfill-days": (
        "backfill_days",
        int,
        "on first start, also fetch and push this many past days (default 0)",
    ),
    "--projects-refresh": (
        "projects_refresh",
        float,
        "seconds between project name refreshes (default 3600)",
    ),
    "--notify-backoff": (
        "notify_backoff",
        float,
        "seconds before a failed Slack message is re-sent, doubling (default 30)",
    ),
    "--digest-grace-hours": (
        "digest_grace_hours",
        float,
        "hours after UTC midnight before the digest (default 6)",
    ),
    "--log-level": ("log_level", str.upper, "DEBUG, INFO, WARNING or ERROR (default INFO)"),
    "--log-format": ("log_format", str, "text or json (default text)"),
}
BOOLEAN_FLAGS: dict[str, tuple[str, str]] = {
    "--line-items": ("line_items", "also group costs by line_item (openai_daily_line_item_cost_usd)"),
    "--digest": ("digest", "send a daily digest to Slack after each UTC day closes"),
}
ALERT_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--spike-ratio": ("spike_ratio", str, "alert when today > ratio x baseline (default 1.5)"),
    "--min-usd": ("min_usd", str, "... and today >= this many USD (default 1.0)"),
    "--baseline-days": ("baseline_days", int, "complete days the baseline averages (default 7)"),
}


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also from OPENAI_COST_EXPORTER_<NAME>)")
    for flag, (dest, kind, text) in SETTINGS_FLAGS.items():
        group.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    for flag, (dest, text) in BOOLEAN_FLAGS.items():
        group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
    group.add_argument(
        "--push-label",
        dest="push_labels",
        action="append",
        metavar="NAME=VALUE",
        help="extra label on pushed samples",
    )
    alerts = parser.add_argument_group("alerts (OPENAI_COST_EXPORTER_ALERTS__<NAME>, or [alerts] in --config)")
    for flag, (dest, kind, text) in ALERT_FLAGS.items():
        alerts.add_argument(flag, dest=f"alerts.{dest}", type=kind, default=None, help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openai-cost-exporter",
        description="Per-project daily OpenAI costs as metrics, pushed to VictoriaMetrics, with Slack alerts.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="collect every --interval, serve /metrics, push, alert")
    run.add_argument("--once", action="store_true", help="run one cycle and exit (0 only if it fully succeeded)")
    _add_settings_flags(run)

    demo = commands.add_parser("demo", help="run against a built-in simulated organization (no key needed)")
    demo.add_argument("--port", type=int, default=9876, help="port of the demo's page and /metrics (default 9876)")
    demo.add_argument("--projects", type=int, default=40, help="projects in the simulated organization")
    demo.add_argument("--seed", type=int, default=7)
    _add_settings_flags(demo)

    backfill = commands.add_parser("backfill", help="write past days' final totals to VictoriaMetrics")
    backfill.add_argument("--days", type=int, required=True, help="complete UTC days to backfill (1-366)")
    _add_settings_flags(backfill)

    report = commands.add_parser("report", help="print spend per project per day")
    report.add_argument("--days", type=int, default=14, help="days to show (default 14)")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--offline", action="store_true", help="read the state file only, no API call")
    _add_settings_flags(report)

    fake = commands.add_parser("fake-api", help="serve a simulated OpenAI Admin API on 127.0.0.1 (tests, demos)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=0)
    fake.add_argument("--key", default="sk-admin-fake", help="the admin key the fake accepts")
    fake.add_argument("--seed", type=int, default=7)
    fake.add_argument("--projects", type=int, default=40)
    fake.add_argument("--amounts", choices=["number", "string", "mixed"], default="string")
    fake.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    return parser


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """Flags (those given) over the environment over the config file."""
    values: dict[str, Any] = {}
    alerts: dict[str, Any] = {}
    for name, value in vars(args).items():
        if value is None:
            continue
        if name.startswith("alerts."):
            alerts[name.removeprefix("alerts.")] = value
        elif name in Settings.model_fields:
            values[name] = value
    if isinstance(values.get("push_labels"), list):
        values["push_labels"] = ",".join(values["push_labels"])
    if alerts:
        values["alerts"] = alerts
    return load_settings(**{**values, **extra})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request-level logs of these libraries would repeat URLs every cycle; slack_sdk's debug logs print the
    # webhook URL, which is a secret (STYLE.md, slack-sdk "Avoid").
    for noisy in ("httpx", "httpcore", "slack_sdk", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `*_created` series would be pushed to VictoriaMetrics as samples of their own: noise for a pushed exporter.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    from openai_cost_exporter import commands  # noqa: PLC0415 - keeps `--help` fast

    try:
        return commands.dispatch(args)
    except (ConfigError, StateError) as exc:  # needs a person, not a restart (systemd: RestartPreventExitStatus=2)
        print(f"openai-cost-exporter: {exc}", file=sys.stderr)
        return 2
    except ExporterError as exc:
        print(f"openai-cost-exporter: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
