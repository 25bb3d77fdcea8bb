"""The composition root: every collaborator is built here from the settings, and the service run until stopped."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType

import httpx
from prometheus_client import CollectorRegistry

from openai_cost_exporter.alerts.alerter import Alerter
from openai_cost_exporter.config import Settings, parse_listen
from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.clock import Clock, SystemClock
from openai_cost_exporter.core.errors import ConfigError
from openai_cost_exporter.core.models import ApiKey
from openai_cost_exporter.core.selfmetrics import RequestCounter, SelfMetrics, self_metrics
from openai_cost_exporter.export.collector import CostCollector
from openai_cost_exporter.export.estimate_metrics import EstimateCollector
from openai_cost_exporter.export.key_metrics import KeyCollector
from openai_cost_exporter.export.push import Pusher
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.ingest.directory import Directory, DirectoryStage, KeyDirectory
from openai_cost_exporter.ingest.usage_stage import UsageStage
from openai_cost_exporter.loop import run_in_thread
from openai_cost_exporter.notify.log_notifier import LogNotifier
from openai_cost_exporter.notify.messages import Notifier
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.service import CostCycle, CycleOptions
from openai_cost_exporter.sources.openai.client import AdminClient, RetryPolicy, build_http_client
from openai_cost_exporter.store.directory_store import DirectoryStore
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import lock_state, open_state
from openai_cost_exporter.store.usage_store import UsageStore
from openai_cost_exporter.web.server import Health, WebServer, build_app

log = logging.getLogger(__name__)

#: How long a stop waits for a running cycle before the process exits anyway (state writes are transactions).
STOP_GRACE_SECONDS = 5.0


def cycle_options(settings: Settings) -> CycleOptions:
    return CycleOptions(
        line_items=settings.line_items,
        revision_days=settings.revision_days,
        baseline_days=settings.alerts.baseline_days,
        retention_days=settings.retention_days,
        backfill_days=settings.backfill_days,
        projects_refresh=dt.timedelta(seconds=settings.projects_refresh),
        usage=settings.usage,
        api_keys=settings.api_keys,
        api_keys_top=settings.api_keys_top,
    )


@dataclass
class Exporter:
    """Everything one running exporter is made of."""

    settings: Settings
    clock: Clock
    registry: CollectorRegistry
    metrics: SelfMetrics
    cycle: CostCycle
    _stack: contextlib.ExitStack = field(repr=False)
    cycle_running: bool = False  # set when a stop left a cycle running: its connections stay open until exit

    def close(self) -> None:
        if self.cycle_running:
            # Closing the state file and clients under the running cycle would turn a clean exit into
            # errors; SQLite's journal keeps the file consistent when the process simply ends.
            return
        self._stack.close()

    def health(self) -> Health:
        return Health(
            snapshot=lambda: self.cycle.snapshot,
            alert_states=lambda: self.cycle.alert_states,
            cycle_done=lambda: self.cycle.cycles_done > 0,
            failed_stages=lambda: self.cycle.last_failed_stages,
            last_attempt=lambda: self.cycle.last_attempt,
            last_success=lambda: self.cycle.last_success,
            interval=self.settings.interval,
            clock=self.clock,
        )


def build_client(
    settings: Settings, stack: contextlib.ExitStack, on_request: Callable[[str, str], None] | None = None
) -> AdminClient:
    """The Admin API client; its HTTP connections close with `stack`."""
    http = stack.enter_context(
        build_http_client(settings.base_url, settings.resolved_admin_key(), timeout=settings.request_timeout)
    )
    return AdminClient(http, on_request=on_request, retry=RetryPolicy())


def build_pusher(settings: Settings, stack: contextlib.ExitStack) -> Pusher | None:
    """The push target, or None without --push-url."""
    if not settings.push_url:
        return None
    http = stack.enter_context(httpx.Client(timeout=settings.request_timeout))
    return Pusher(http, settings.push_url, {"job": settings.job, **settings.push_labels})


def lock_sender(settings: Settings, stack: contextlib.ExitStack) -> None:
    """Take the state dir's sender lock (StateError if another process has it); released when `stack` closes."""
    stack.callback(lock_state(settings.state_file).close)


def build_ledger(settings: Settings, stack: contextlib.ExitStack) -> tuple[sqlite3.Connection, Ledger]:
    conn = open_state(settings.state_file)
    stack.callback(conn.close)
    return conn, Ledger(conn)


def build_alerter(settings: Settings, conn: sqlite3.Connection, clock: Clock, metrics: SelfMetrics) -> Alerter:
    url = settings.resolved_webhook_url()
    notifier: Notifier = LogNotifier(log)
    if url:
        from openai_cost_exporter.notify.slack import SlackNotifier  # noqa: PLC0415 (slack_sdk only with a webhook)

        notifier = SlackNotifier(url, timeout=settings.request_timeout)
    notifications = Notifications(
        conn,
        clock,
        metrics,
        escalation_factor=settings.alerts.escalation_factor,
        backoff_seconds=settings.notify_backoff,
    )
    return Alerter(
        policy=settings.alerts,
        notifications=notifications,
        notifier=notifier,
        clock=clock,
        digest_grace=dt.timedelta(hours=settings.digest_grace_hours) if settings.digest else None,
        retention=dt.timedelta(days=settings.retention_days),
    )


def build_usage(
    settings: Settings, client: AdminClient, conn: sqlite3.Connection, metrics: SelfMetrics
) -> UsageStage | None:
    """The usage stage (estimates, runaway alert), or None with --no-usage."""
    if not settings.usage:
        return None
    history = defaults.USAGE_HISTORY_DAYS

    def connect() -> sqlite3.Connection:  # for the usage fetch that runs beside the costs
        return open_state(settings.state_file)

    return UsageStage(client, UsageStore(conn), PriceBook(), metrics, history_days=history, connect=connect)


def build_directory(
    settings: Settings,
    client: AdminClient,
    conn: sqlite3.Connection,
    clock: Clock,
    metrics: SelfMetrics,
    stack: contextlib.ExitStack,
) -> DirectoryStage | None:
    """The background listings (API key names, hard spend limits), or None when neither is wanted."""
    if not (settings.api_keys or settings.spend_limits):
        return None
    directory = Directory(client, clock)
    stack.callback(directory.stop)
    return DirectoryStage(
        directory,
        DirectoryStore(conn),
        metrics,
        refresh=dt.timedelta(seconds=settings.projects_refresh),
        api_keys=settings.api_keys,
        spend_limits=settings.spend_limits,
    )


def build_key_directory(client: AdminClient | None, conn: sqlite3.Connection, clock: Clock) -> KeyDirectory:
    """Key names for `report --by api-key`: from the state file, the missing ones listed now (none offline)."""
    store = DirectoryStore(conn)
    if client is None:
        return _StoredKeys(store)
    return DirectoryStage(
        Directory(client, clock, rate=None),
        store,
        SelfMetrics(CollectorRegistry()),
        refresh=dt.timedelta(seconds=defaults.PROJECTS_REFRESH_SECONDS),
        api_keys=True,
        spend_limits=False,
    )


class _StoredKeys:
    def __init__(self, store: DirectoryStore) -> None:
        self._store = store

    def key_names(self, project_ids: Collection[str], timeout: float) -> Mapping[str, ApiKey]:
        return self._store.keys()


def build_exporter(settings: Settings, *, clock: Clock | None = None) -> Exporter:
    """Open the state, build the clients, the collectors and the alert engine."""
    clock = clock or SystemClock()
    stack = contextlib.ExitStack()
    try:
        registry = CollectorRegistry(auto_describe=True)
        metrics = self_metrics(registry, settings.replica)
        requests = RequestCounter(metrics.count_request)
        client = build_client(settings, stack, requests)  # the key first: a missing key leaves no state dir behind
        lock_sender(settings, stack)  # one sender per state dir: a second one would post every alert again
        conn, ledger = build_ledger(settings, stack)
        cycle = CostCycle(
            source=client,
            ledger=ledger,
            clock=clock,
            metrics=metrics,
            options=cycle_options(settings),
            requests=requests,
            pusher=build_pusher(settings, stack),
            live_registry=registry,
            alerter=build_alerter(settings, conn, clock, metrics),
            usage=build_usage(settings, client, conn, metrics),
            directory=build_directory(settings, client, conn, clock, metrics, stack),
        )
        registry.register(CostCollector(lambda: cycle.snapshot, settings.alerts, clock))
        registry.register(KeyCollector(lambda: cycle.snapshot, clock))
        registry.register(EstimateCollector(lambda: cycle.estimates, lambda: cycle.snapshot, clock))
    except BaseException:
        stack.close()
        raise
    return Exporter(settings, clock, registry, metrics, cycle, stack)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT; the previous handlers come back afterwards."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def start_web(exporter: Exporter) -> WebServer:
    """The HTTP server on `listen`, started; an address it cannot bind is a ConfigError (a person must choose)."""
    host, port = parse_listen(exporter.settings.listen)
    try:
        web = WebServer(host, port, build_app(exporter.registry, exporter.health()))
    except OSError as exc:  # EADDRINUSE, EADDRNOTAVAIL, EACCES, or a host name that does not resolve
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"cannot listen on {host}:{port}: {reason} (choose another --listen / --port)") from None
    log.info("serving /metrics, /healthz, /readyz and the spend page on %s/", web.url)
    return web.start()


def serve(
    exporter: Exporter, stop: threading.Event, *, on_listening: Callable[[str], None] | None = None
) -> WebServer | None:
    """Serve HTTP (when `listen` is set) and run cycles until `stop`; returns once stopped.

    `on_listening` gets the server's base URL (with the real port, also for port 0) once it accepts connections.
    """
    web = start_web(exporter) if exporter.settings.listen else None
    try:
        if web is not None and on_listening is not None:
            on_listening(web.url)
        run_cycles(exporter, stop)
    finally:
        if web is not None:
            web.close()
    return web


def run_cycles(exporter: Exporter, stop: threading.Event) -> None:
    """Run cycles in a thread until `stop` (loop.py `run_in_thread`); one still running after the grace period is
    left behind, and said."""
    if run_in_thread(exporter.cycle, exporter.clock, exporter.settings.interval, stop, grace=STOP_GRACE_SECONDS):
        exporter.cycle_running = True
        log.warning("a cycle is still running after %.0f s; exiting anyway", STOP_GRACE_SECONDS)
