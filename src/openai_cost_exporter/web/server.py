"""The HTTP endpoints: `/metrics`, `/healthz`, `/readyz` and the spend page at `/`."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from openai_cost_exporter.core.clock import Clock
from openai_cost_exporter.figures.api_keys import top_keys
from openai_cost_exporter.figures.snapshot import PAGE_DAYS, CostSnapshot
from openai_cost_exporter.web.page import PageView, render_page

#: API keys shown under the name of a project with an alert state.
PAGE_TOP_KEYS = 3

StartResponse = Callable[..., Any]


#: A loop attempting no cycle for this many intervals (plus STALL_GRACE) is stalled; a loop whose last success is
#: that old serves stale figures.
STALE_INTERVALS = 3
STALL_GRACE = dt.timedelta(minutes=2)
#: Not ready once the last cycle failed and the last success is this many intervals older than its start: about
#: three cycles failed in a row (cycle k+n starts about n intervals after cycle k ends). A time, not a count,
#: because the loop keeps no streak; a blip of one or two failed cycles keeps the exporter ready.
FAILING_INTERVALS = 2.5


@dataclass(frozen=True, slots=True)
class Health:
    """What the probes look at: the last cycle attempt and the current snapshot."""

    snapshot: Callable[[], CostSnapshot | None]
    last_attempt: Callable[[], dt.datetime | None]
    last_success: Callable[[], dt.datetime | None]
    interval: float
    clock: Clock
    alert_states: Callable[[], Mapping[str, str]] = dict  # project_id -> alert state, beside the snapshot
    cycle_done: Callable[[], bool] = lambda: True  # a first cycle has run to its end (alerts judged)
    failed_stages: Callable[[], Sequence[str]] = list  # the stages the last finished cycle failed in; [] = ok

    def live(self) -> bool:
        """Alive while the loop keeps attempting cycles (a hung loop fails the liveness probe)."""
        attempt = self.last_attempt()
        if attempt is None:
            return True  # still starting
        return self.clock.now() - attempt <= self._stale_after()

    def ready(self) -> bool:
        return self.not_ready() is None

    def not_ready(self) -> str | None:
        """Why the exporter is not ready, or None: no finished first cycle with figures yet, cycles failing since
        the last success (or since the start), or a last success older than 3 intervals + 2 minutes."""
        if self.snapshot() is None or not self.cycle_done():
            return "no successful cycle yet"
        failed, success, attempt = list(self.failed_stages()), self.last_success(), self.last_attempt()
        stages = f"stages: {', '.join(failed)}"
        if success is None:  # a finished cycle that failed in no stage records its success
            return f"no successful cycle yet: the last cycle failed ({stages})" if failed else None
        if failed and attempt is not None and (attempt - success).total_seconds() > FAILING_INTERVALS * self.interval:
            return f"cycles failing since the last success at {_when(success)} ({stages})"
        if self.clock.now() - success > self._stale_after():
            return f"last successful cycle at {_when(success)}, over {STALE_INTERVALS} intervals ago"
        return None

    def _stale_after(self) -> dt.timedelta:
        return dt.timedelta(seconds=STALE_INTERVALS * self.interval) + STALL_GRACE


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the cycle log lines."""


def build_app(
    registry: CollectorRegistry, health: Health
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _text(start_response, health.live(), "ok", "cycle loop stalled")
        if path == "/readyz":
            reason = health.not_ready()
            return _text(start_response, reason is None, "ready", reason or "")
        if path in {"/", "/index.html"}:
            body = render_page(_page_view(health))
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /, /metrics, /healthz or /readyz\n"]

    return app


def _text(start_response: StartResponse, good: bool, yes: str, no: str) -> list[bytes]:
    start_response("200 OK" if good else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
    return [(yes if good else no).encode() + b"\n"]


def _page_view(health: Health) -> PageView:
    snap = health.snapshot()
    now = health.clock.now()
    failed = tuple(health.failed_stages())
    failed_at = health.last_attempt() if failed else None  # the start of the failed cycle (none runs after it)
    if snap is None:
        return PageView(now, health.last_success(), [], {}, {}, {}, {}, {}, failed, failed_at)
    # The last PAGE_DAYS UTC days ending today, whatever the ledger's retention.
    span = [snap.day - dt.timedelta(days=n) for n in range(PAGE_DAYS - 1, -1, -1)]
    return PageView(
        generated_at=now,
        last_success=health.last_success(),
        days=span,
        daily={day: dict(snap.history.get(day, {})) for day in span},
        names={pid: snap.name(pid) for pid in snap.project_ids},
        today=dict(snap.today),
        baseline=dict(snap.baseline),
        alerts=dict(health.alert_states()),
        failed_stages=failed,
        failed_at=failed_at,
        keys=page_keys(snap, health.alert_states()),
    )


def page_keys(snap: CostSnapshot, alerts: Mapping[str, str]) -> dict[str, list[tuple[str, str, Decimal]]]:
    """The top API keys of today (billed, as capped for the metrics) of each project with an alert state."""
    if snap.keys is None:
        return {}
    return {pid: top_keys(pid, snap.keys, snap.key_names, PAGE_TOP_KEYS) for pid in alerts}


class _IPv6WSGIServer(ThreadingWSGIServer):
    address_family = socket.AF_INET6


def server_class(host: str) -> type[ThreadingWSGIServer]:
    """The server class for `host`: an IPv6 literal (`--listen [::]:9876`) needs an AF_INET6 socket."""
    return _IPv6WSGIServer if ":" in host else ThreadingWSGIServer


class WebServer:
    """A threaded HTTP server in a background thread; `close()` stops it."""

    def __init__(self, host: str, port: int, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self._host = host
        self._server = make_server(host, port, app, server_class(host), handler_class=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """`http://HOST:PORT` with the port actually bound (port 0 picks one), an IPv6 host in brackets."""
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
