"""The command line: `run`, `demo`, `backfill`, `report`, `backtest` and `fake-api`.

Every settings flag has an environment variable (see config.py); flags win over the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import prometheus_client

from openai_cost_exporter import __version__
from openai_cost_exporter.cli.flags import ALL_SETTINGS, COMMON_SETTINGS, add_settings_flags
from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.clock import TEST_NO_BACKOFF_ENV
from openai_cost_exporter.core.errors import ConfigError, ExporterError, StateDirBusy, StateError

log = logging.getLogger(__name__)

#: A person must act (invalid settings, a corrupt state file, a second service on one state dir): systemd's
#: RestartPreventExitStatus=2 does not restart it.
EXIT_PERSON_MUST_ACT = 2
#: `run --once` found another run holding the state dir (a cron run overlapping the previous one): it skipped its
#: turn. 75 is sysexits.h's EX_TEMPFAIL, "try again later", which cron wrappers and systemd's
#: SuccessExitStatus= / RestartPreventExitStatus= can single out.
EXIT_SKIPPED = 75
RUN_EPILOG = (
    "exit codes: 0 success; 1 failed on something that may pass later (API, push, a Slack message still pending "
    "after --once); 2 a person must act (invalid settings, a corrupt or foreign state file, another `run` serving "
    f"the same --state-dir); {EXIT_SKIPPED} (EX_TEMPFAIL, --once only) another run holds the state dir, so this one "
    "skipped its turn: try again later"
)

#: The settings each command reads, so its flags (and its help) are those and no others: a flag it would ignore
#: is an error, not silently nothing. The environment and --config still carry every setting to every command.
RUN_SETTINGS = ALL_SETTINGS
DEMO_SETTINGS = ALL_SETTINGS - {"base_url", "listen"}  # the demo's own fake API, and --port
BACKFILL_SETTINGS = COMMON_SETTINGS | {
    "base_url",
    "request_timeout",
    "state_dir",
    "push_url",
    "job",
    "push_labels",
    "line_items",
    "api_keys",
    "api_keys_top",
    "retention_days",
}
REPORT_SETTINGS = COMMON_SETTINGS | {
    "base_url",
    "request_timeout",
    "state_dir",
    "line_items",
    "api_keys",
    "alerts.baseline_days",
}
BACKTEST_SETTINGS = (  # the state file only, never the API: every alert setting, and whether usage is judged
    COMMON_SETTINGS | {"state_dir", "usage"} | {name for name in ALL_SETTINGS if name.startswith("alerts.")}
)


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
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    text: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    return commands.add_parser(name, allow_abbrev=False, help=text, description=description)


def _run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = _command(commands, "run", "collect every --interval, serve /metrics, push, alert")
    run.epilog = RUN_EPILOG
    run.add_argument(
        "--once",
        action="store_true",
        help=f"run one cycle and exit (0 only if it fully succeeded; {EXIT_SKIPPED}: another run holds the state dir)",
    )
    add_settings_flags(run, RUN_SETTINGS)


def _demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = _command(commands, "demo", "run against a built-in simulated organization (no key needed)")
    demo.add_argument(
        "--port", type=int, default=defaults.PORT, help="port of the demo's page and /metrics (default %(default)s)"
    )
    demo.add_argument(
        "--projects", type=int, default=defaults.DEMO_PROJECTS, help="projects in the simulated organization"
    )
    demo.add_argument("--seed", type=int, default=7)
    add_settings_flags(demo, DEMO_SETTINGS)


def _backfill(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backfill = _command(commands, "backfill", "write past days' final totals to VictoriaMetrics")
    backfill.add_argument(
        "--days", type=int, required=True, help="complete UTC days to backfill (1 to --retention-days, 400 by default)"
    )
    backfill.add_argument(
        "--repush",
        action="store_true",
        help="push again days already pushed to this --push-url (harmless: each day lands on its own timestamps)",
    )
    add_settings_flags(backfill, BACKFILL_SETTINGS)


def _report(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = _command(commands, "report", "print spend per project per day")
    report.add_argument("--days", type=int, default=14, help="days to show (default %(default)s)")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--offline", action="store_true", help="read the state file only, no API call")
    report.add_argument(
        "--by",
        choices=["project", "api-key"],
        default="project",
        help="a row per project, or per API key of each project (names and owners listed as needed)",
    )
    add_settings_flags(report, REPORT_SETTINGS)


def _backtest(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "replay the alert policy over the stored history: what would have been sent (no API call)"
    backtest = _command(commands, "backtest", text)
    backtest.add_argument("--days", type=int, required=True, help="closed UTC days before today to judge (1-366)")
    backtest.add_argument("--format", choices=["table", "json"], default="table")
    add_settings_flags(backtest, BACKTEST_SETTINGS)


#: `fake-api --help`'s description: the control endpoint a test or a demo drives (fake/control.py).
FAKE_API_DESCRIPTION = (
    "Serve a simulated OpenAI Admin API (costs, usage, projects, their API keys and hard spend limits) until "
    "Ctrl-C; point --base-url at the URL it "
    "prints. Control endpoints under /_fake/ need no key, e.g. POST /_fake/runaway "
    '{"project_id": "proj_...", "factor": "10", "minutes_ago": 40} makes a project spend 10x as fast since '
    '40 minutes ago ({"project_id": ..., "stop": true} ends it). The others: GET/POST /_fake/faults, '
    "GET /_fake/requests, POST /_fake/reset, POST /_fake/spend, POST /_fake/scale_today, "
    'POST /_fake/spend_limit {"project_id": ..., "threshold_cents": 12345, "status": "inactive"}, '
    "GET /_fake/totals?day=YYYY-MM-DD (described in fake/control.py)."
)


def _fake_api(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "serve a simulated OpenAI Admin API on 127.0.0.1 (tests, demos)"
    fake = _command(commands, "fake-api", text, FAKE_API_DESCRIPTION)
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    fake.add_argument("--port", type=int, default=0, help="port to listen on (default 0: any free port, printed)")
    fake.add_argument("--key", default="sk-admin-fake", help="the admin key the fake accepts")
    fake.add_argument("--seed", type=int, default=7, help="seed of the simulated organization: same seed, same figures")
    fake.add_argument(
        "--projects",
        type=int,
        default=40,
        help="projects (default %(default)s), before those of --runaway and --rhythm",
    )
    fake.add_argument(
        "--amounts",
        choices=["number", "string", "mixed"],
        default="string",
        help="how cost amounts are written in JSON: numbers, decimal strings, or both (default %(default)s)",
    )
    fake.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    fake.add_argument(
        "--runaway", action="store_true", help="add 'Agent Loop', spending 10x since 40 minutes before start"
    )
    fake.add_argument(
        "--rhythm",
        action="store_true",
        help="add 'Nightly Batch' (half its spend at 02:00 UTC), 'Steady Search' and 'Tiny Tool' (even all day)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `*_created` series would be pushed to VictoriaMetrics as samples of their own: noise for a pushed exporter.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    from openai_cost_exporter.cli import commands  # noqa: PLC0415 - keeps `--help` fast

    if os.environ.get(TEST_NO_BACKOFF_ENV):  # the suite's CLI runs: retries without their waits, attempts kept
        import stamina  # noqa: PLC0415

        from openai_cost_exporter.sources.openai.client import RetryPolicy  # noqa: PLC0415

        stamina.set_testing(True, attempts=RetryPolicy().attempts, cap=True)

    try:
        return commands.dispatch(args)
    except StateDirBusy as exc:
        if args.command == "run" and args.once:  # an overlap (cron every minute, a slow cycle): not a mistake
            pid = f" (pid {exc.pid})" if exc.pid is not None else ""
            print(
                f"openai-cost-exporter: another run{pid} holds the state dir {exc.state_dir}; skipped", file=sys.stderr
            )
            return EXIT_SKIPPED
        print(f"openai-cost-exporter: {exc}", file=sys.stderr)  # a second service: a person must act
        return EXIT_PERSON_MUST_ACT
    except (ConfigError, StateError) as exc:  # needs a person, not a restart (systemd: RestartPreventExitStatus=2)
        print(f"openai-cost-exporter: {exc}", file=sys.stderr)
        return EXIT_PERSON_MUST_ACT
    except ExporterError as exc:
        print(f"openai-cost-exporter: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
