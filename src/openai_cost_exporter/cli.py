"""The command line: `run`, `demo`, `backfill`, `report`, `backtest` and `fake-api`.

Every settings flag has an environment variable (see config.py); flags win over the environment.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import prometheus_client

from openai_cost_exporter import __version__, defaults
from openai_cost_exporter.errors import ConfigError, ExporterError, StateError
from openai_cost_exporter.flags import add_settings_flags

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openai-cost-exporter",
        allow_abbrev=False,
        description="Per-project daily OpenAI costs as metrics, pushed to VictoriaMetrics, with Slack alerts.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_run, _demo, _backfill, _report, _backtest, _fake_api):
        add(commands)
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
) -> argparse.ArgumentParser:
    return commands.add_parser(name, allow_abbrev=False, help=text)


def _run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = _command(commands, "run", "collect every --interval, serve /metrics, push, alert")
    run.add_argument("--once", action="store_true", help="run one cycle and exit (0 only if it fully succeeded)")
    add_settings_flags(run)


def _demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = _command(commands, "demo", "run against a built-in simulated organization (no key needed)")
    demo.add_argument(
        "--port", type=int, default=defaults.PORT, help="port of the demo's page and /metrics (default %(default)s)"
    )
    demo.add_argument(
        "--projects", type=int, default=defaults.DEMO_PROJECTS, help="projects in the simulated organization"
    )
    demo.add_argument("--seed", type=int, default=7)
    add_settings_flags(demo)


def _backfill(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backfill = _command(commands, "backfill", "write past days' final totals to VictoriaMetrics")
    backfill.add_argument("--days", type=int, required=True, help="complete UTC days to backfill (1-366)")
    add_settings_flags(backfill)


def _report(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = _command(commands, "report", "print spend per project per day")
    report.add_argument("--days", type=int, default=14, help="days to show (default %(default)s)")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--offline", action="store_true", help="read the state file only, no API call")
    add_settings_flags(report)


def _backtest(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "replay the alert policy over the stored history: what would have been sent (no API call)"
    backtest = _command(commands, "backtest", text)
    backtest.add_argument("--days", type=int, required=True, help="closed UTC days before today to judge (1-366)")
    backtest.add_argument("--format", choices=["table", "json"], default="table")
    add_settings_flags(backtest)


def _fake_api(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fake = _command(commands, "fake-api", "serve a simulated OpenAI Admin API on 127.0.0.1 (tests, demos)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=0)
    fake.add_argument("--key", default="sk-admin-fake", help="the admin key the fake accepts")
    fake.add_argument("--seed", type=int, default=7)
    fake.add_argument("--projects", type=int, default=40)
    fake.add_argument("--amounts", choices=["number", "string", "mixed"], default="string")
    fake.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")


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
