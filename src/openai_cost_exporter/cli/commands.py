"""What each CLI command does, once its flags are parsed."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from openai_cost_exporter.app import (
    build_client,
    build_exporter,
    build_key_directory,
    build_ledger,
    build_pusher,
    lock_sender,
    serve,
    stop_on_signals,
)
from openai_cost_exporter.cli.flags import settings_from_args
from openai_cost_exporter.cli.logs import setup_logging
from openai_cost_exporter.cli.settings_check import unknown_environment
from openai_cost_exporter.config import Settings
from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.clock import TEST_NO_BACKOFF_ENV, Clock, SystemClock, clock_from_env
from openai_cost_exporter.core.errors import AuthError, ConfigError, ScopeError, StateError
from openai_cost_exporter.service import CycleReport
from openai_cost_exporter.store.directory_store import DirectoryStore
from openai_cost_exporter.store.usage_store import UsageStore

log = logging.getLogger(__name__)

#: How long `run --once` waits for the key and limit listings it asks in the background.
ONCE_LISTINGS_WAIT_SECONDS = defaults.LISTINGS_WAIT_SECONDS
#: Most days `report --days` and `backtest --days` take: a year, leap day included.
MAX_DAYS = 366


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "fake-api":
        return fake_api(args)
    if args.command == "demo":
        return demo(args)
    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    warn_unknown_environment()
    clock = clock_from_env()
    if args.command == "run":
        return run(settings, once=args.once, clock=clock)
    if args.command == "backfill":
        return backfill(settings, args.days, repush=args.repush, clock=clock)
    if args.command == "backtest":
        return backtest(settings, days=args.days, fmt=args.format, clock=clock)
    return report(
        settings, days=args.days, fmt=args.format, offline=args.offline, by_key=args.by == "api-key", clock=clock
    )


def warn_unknown_environment() -> None:
    """One warning per OPENAI_COST_EXPORTER_* variable no setting reads (a typo), once logging is set up."""
    for problem in unknown_environment():
        log.warning("%s", problem)
    if os.environ.get(TEST_NO_BACKOFF_ENV):
        log.warning("%s is set: retries skip their back-off waits (tests only)", TEST_NO_BACKOFF_ENV)


def run(settings: Settings, *, once: bool, clock: Clock | None = None) -> int:
    exporter = build_exporter(settings, clock=clock)
    try:
        if once:
            # A cron job's process ends with its cycle: the listings its figures lack (names never listed, limits
            # never read) are waited for before them, so its push names the keys and its alerts judge the limits;
            # then the refreshes under way, within the same bound in all.
            started = time.monotonic()
            report = exporter.cycle.run_once(listings_wait=ONCE_LISTINGS_WAIT_SECONDS)
            spent = time.monotonic() - started
            left = exporter.cycle.finish_listings(max(0.0, ONCE_LISTINGS_WAIT_SECONDS - spent))
            if left:
                log.info(
                    "run --once: %d listing(s) still in the background after %.0f s; the next run continues them",
                    left,
                    ONCE_LISTINGS_WAIT_SECONDS,
                )
            return _once_exit_code(report)
        with stop_on_signals() as stop:
            serve(exporter, stop)
        return 0
    finally:
        exporter.close()


def _once_exit_code(report: CycleReport) -> int:
    """0 only if the cycle succeeded and nothing is left to send: cron or a timer unit must see a lost alert; 2 when
    the admin key was rejected (a person must act: systemd's RestartPreventExitStatus=2 does not restart it)."""
    if any(isinstance(err, AuthError) and not isinstance(err, ScopeError) for err in report.errors.values()):
        return 2
    if report.pending_messages:
        log.error(
            "run --once: %d message(s) still pending (Slack did not take them); exiting 1, the next run retries",
            report.pending_messages,
        )
        return 1
    return 0 if report.ok else 1


def backfill(settings: Settings, days: int, *, repush: bool = False, clock: Clock | None = None) -> int:
    """`backfill --days N`: the N complete UTC days before today (up to the retention: days it would prune
    would be fetched again every cycle)."""
    from openai_cost_exporter import backfill as backfilling  # noqa: PLC0415 (each command imports its own part)

    if not 1 <= days <= settings.retention_days:
        raise ConfigError(f"backfill --days must be between 1 and --retention-days ({settings.retention_days})")
    now = (clock or SystemClock()).now()
    with contextlib.ExitStack() as stack:
        client = build_client(settings, stack)  # the key first: a missing key must not leave a state file behind
        # It writes the ledger and pushes closed days with the service's bookkeeping: beside a running service
        # the same days would go out twice. The service's --backfill-days does the same job from inside it.
        lock_sender(settings, stack)
        conn, ledger = build_ledger(settings, stack)
        pusher = build_pusher(settings, stack)
        if pusher is None:
            log.warning("no --push-url: the days go to the state file only (for report --offline and baselines)")
        today = now.date()
        result = backfilling.backfill(
            client,
            ledger,
            pusher,
            start=today - dt.timedelta(days=days),
            end=today,
            now=now,
            line_items=settings.line_items,
            api_keys=settings.api_keys,
            api_keys_top=settings.api_keys_top,
            keys=DirectoryStore(conn).keys() if settings.api_keys else None,
            repush=repush,
        )
    log.info(
        "backfill done: %d days, %d projects, %d samples pushed, %.1f s",
        result.days,
        result.projects,
        result.samples,
        result.duration,
    )
    return 0


def report(
    settings: Settings, *, days: int, fmt: str, offline: bool, by_key: bool = False, clock: Clock | None = None
) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"report --days must be between 1 and {MAX_DAYS}")
    from openai_cost_exporter.cli import report as reporting  # noqa: PLC0415 (rich, which only reports need)

    if offline:
        require_state(settings, "run `run` or `backfill` first")
    clock = clock or SystemClock()
    with contextlib.ExitStack() as stack:
        client = None if offline else build_client(settings, stack)
        conn, ledger = build_ledger(settings, stack)
        data = reporting.gather_report(
            client,
            ledger,
            clock.now(),
            days=days,
            baseline_days=settings.alerts.baseline_days,
            line_items=settings.line_items,
            progress=sys.stderr.isatty(),
            by_key=by_key,
            fetch_by_key=settings.api_keys,
            directory=build_key_directory(client, conn, clock) if by_key else None,
        )
    if by_key and not data.keys:
        log.warning(
            "no spend by API key in these days%s", " of the state file (run with --api-keys)" if offline else ""
        )
    if fmt == "table":
        text = reporting.render_table(data, width=shutil.get_terminal_size().columns)
    else:
        text = {"csv": reporting.render_csv, "json": reporting.render_json}[fmt](data)
    # Names are written exactly as OpenAI returns them; whatever the terminal cannot encode is escaped.
    sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    sys.stdout.write(text)
    return 0


def require_state(settings: Settings, advice: str) -> None:
    """Raise StateError unless the state file exists, for the commands that only read it.

    Opening the state would create it: an empty history would print an empty table or judge nothing, and look
    like "no spend" or "no alerts"."""
    missing = "" if settings.state_dir.is_dir() else " (the state dir does not exist)"
    if missing or not settings.state_file.is_file():
        raise StateError(f"no state file at {settings.state_file}{missing}: {advice}")


def backtest(settings: Settings, *, days: int, fmt: str, clock: Clock | None = None) -> int:
    """`backtest --days N`: what the current alert policy would have sent; the state file only, never the API."""
    from openai_cost_exporter.cli import backtest as backtesting  # noqa: PLC0415 (rich, which only reports need)

    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"backtest --days must be between 1 and {MAX_DAYS}")
    require_state(settings, f"run `run` or `backfill --days {days}` first")
    with contextlib.ExitStack() as stack:
        conn, ledger = build_ledger(settings, stack)
        usage = UsageStore(conn) if settings.usage else None  # with --no-usage a cycle has no runaway rule either
        now = (clock or SystemClock()).now()
        result = backtesting.run_backtest(ledger, usage, settings.alerts, days=days, now=now)
    if fmt == "table":
        text = backtesting.render_table(result, width=shutil.get_terminal_size().columns)
    else:
        text = backtesting.render_json(result)
    sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    sys.stdout.write(text)
    return 0


def fake_api(args: argparse.Namespace) -> int:
    from openai_cost_exporter.fake.api import Faults, serve_forever  # noqa: PLC0415
    from openai_cost_exporter.fake.org import FakeOrg  # noqa: PLC0415

    setup_logging("INFO", "text")
    org = FakeOrg.generate(
        seed=args.seed, project_count=args.projects, runaway_project=args.runaway, rhythm_projects=args.rhythm
    )
    faults = Faults(amount_format=args.amounts, latency_seconds=args.latency)

    def ready(url: str) -> None:
        print(f"fake OpenAI Admin API on {url} (admin key: {args.key!r}, {args.projects} projects)", flush=True)

    with stop_on_signals() as stop:
        serve_forever(
            host=args.host, port=args.port, org=org, admin_key=args.key, faults=faults, stop=stop, on_ready=ready
        )
    return 0


DEMO_KEY = "sk-admin-demo"


def demo(args: argparse.Namespace) -> int:
    """The exporter against a simulated organization: no key, no other service."""
    from openai_cost_exporter.fake.api import FakeAdminAPI  # noqa: PLC0415
    from openai_cost_exporter.fake.org import FakeOrg  # noqa: PLC0415

    clock = clock_from_env()
    org = FakeOrg.generate(seed=args.seed, project_count=args.projects, clock=clock, runaway_project=True)
    with FakeAdminAPI(org, admin_key=DEMO_KEY) as api, tempfile.TemporaryDirectory(prefix="oce-demo-") as tmp:
        base_url = api.start()
        settings = settings_from_args(
            args,
            base_url=base_url,
            admin_key=DEMO_KEY,
            listen=f"127.0.0.1:{args.port}",
            state_dir=args.state_dir or Path(tmp),
            interval=args.interval or defaults.DEMO_INTERVAL_SECONDS,
            line_items=True if args.line_items is None else args.line_items,
            api_keys=True if args.api_keys is None else args.api_keys,
        )
        setup_logging(settings.log_level, settings.log_format)
        warn_unknown_environment()
        exporter = build_exporter(settings, clock=clock)
        slack = exporter.settings.resolved_webhook_url() is not None

        def banner(url: str) -> None:  # only once the page listens: a busy port is one error line, no banner
            _demo_banner(settings, url, args.projects, slack)

        try:
            with stop_on_signals() as stop:
                serve(exporter, stop, on_listening=banner)
        finally:
            exporter.close()
    return 0


def _demo_banner(settings: Settings, url: str, projects: int, slack: bool) -> None:
    alerts = "to Slack (SLACK_WEBHOOK_URL)" if slack else "to this log (set SLACK_WEBHOOK_URL to get them in Slack)"
    print(
        "\n".join(
            [
                "",
                f"openai-cost-exporter demo: a simulated organization of {projects} projects, polled every "
                f"{settings.interval:g} s.",
                f"  spend page   {url}/",
                f"  metrics      {url}/metrics   (openai_daily_cost_usd, openai_daily_api_key_cost_usd, "
                "openai_spend_limit_usd, ...)",
                f"  alerts       {alerts}: 'Search Reranker' is spiking today (billed), and 'Agent Loop' runs"
                " away at 10x since 40 minutes ago (an estimate from token usage); two projects are near or at"
                " their hard spend limit (their limits listed as the first cycle starts: all four in that cycle)",
                "  stop with Ctrl-C",
                "",
            ]
        ),
        flush=True,
    )
