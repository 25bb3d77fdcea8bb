"""Wiring: build the collaborators from the settings, and run the service until told to stop."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

import httpx
from prometheus_client import CollectorRegistry

from openai_cost_exporter.alerter import build_alerter
from openai_cost_exporter.clock import Clock, SystemClock
from openai_cost_exporter.collector import CostCollector
from openai_cost_exporter.config import Settings, parse_listen
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.openai_client import AdminClient, RetryPolicy, build_http_client
from openai_cost_exporter.push import Pusher
from openai_cost_exporter.selfmetrics import SelfMetrics
from openai_cost_exporter.service import CostCycle, CycleOptions, run_forever
from openai_cost_exporter.state import open_state
from openai_cost_exporter.web import Health, WebServer, build_app

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
        def last_success() -> dt.datetime | None:
            value = self.metrics.last_success._value.get()
            return dt.datetime.fromtimestamp(value, dt.UTC) if value else None

        return Health(
            snapshot=lambda: self.cycle.snapshot,
            last_attempt=lambda: self.cycle.last_attempt,
            last_success=last_success,
            interval=self.settings.interval,
            clock=self.clock,
        )


def build_exporter(settings: Settings, *, clock: Clock | None = None) -> Exporter:
    """Open the state, build the clients, the collectors and the alert engine."""
    clock = clock or SystemClock()
    stack = contextlib.ExitStack()
    try:
        conn = open_state(settings.state_file)
        stack.callback(conn.close)
        registry = CollectorRegistry(auto_describe=True)
        metrics = SelfMetrics(registry)
        api_http = stack.enter_context(
            build_http_client(settings.base_url, settings.resolved_admin_key(), timeout=settings.request_timeout)
        )
        pusher = None
        if settings.push_url:
            push_http = stack.enter_context(httpx.Client(timeout=settings.request_timeout))
            pusher = Pusher(push_http, settings.push_url, {"job": settings.job, **settings.push_labels})
        client = AdminClient(api_http, metrics=metrics, retry=RetryPolicy())
        ledger = Ledger(conn)
        alerts = build_alerter(settings, conn=conn, clock=clock, metrics=metrics, client=client, ledger=ledger)
        cycle = CostCycle(
            client=client,
            ledger=ledger,
            clock=clock,
            metrics=metrics,
            options=cycle_options(settings),
            pusher=pusher,
            live_registry=registry,
            alerts=alerts,
        )
        registry.register(CostCollector(lambda: cycle.snapshot, settings.alerts, clock))
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


def serve(exporter: Exporter, stop: threading.Event) -> WebServer | None:
    """Serve HTTP (when `listen` is set) and run cycles until `stop`; returns once stopped."""
    web = None
    if exporter.settings.listen:
        host, port = parse_listen(exporter.settings.listen)
        web = WebServer(host, port, build_app(exporter.registry, exporter.health())).start()
        log.info("serving /metrics, /healthz, /readyz and the spend page on http://%s:%d/", host, web.port)
    loop = threading.Thread(
        target=run_forever,
        args=(exporter.cycle, exporter.clock, exporter.settings.interval, stop),
        name="cycles",
        daemon=True,
    )
    loop.start()
    try:
        stop.wait()
    finally:
        stop.set()
        loop.join(timeout=STOP_GRACE_SECONDS)
        if loop.is_alive():
            exporter.cycle_running = True
            log.warning("a cycle is still running after %.0f s; exiting anyway", STOP_GRACE_SECONDS)
        if web is not None:
            web.close()
    return web
