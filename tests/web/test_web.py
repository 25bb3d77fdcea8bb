"""HTTP endpoints over a real WebServer on 127.0.0.1:0: /metrics, /healthz, /readyz, the spend page, 404."""

from __future__ import annotations

import datetime as dt
import gzip
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import pytest
from prometheus_client import CollectorRegistry

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.export.collector import CostCollector
from openai_cost_exporter.figures.snapshot import CostSnapshot, build_snapshot
from openai_cost_exporter.rules import AlertPolicy
from openai_cost_exporter.web.server import Health, WebServer, build_app, server_class

INTERVAL = 60.0
EVIL_NAME = '<script>alert("pwned")</script> & Co'


@dataclass
class LoopState:
    """What the service loop would expose: its snapshot and the times of its last attempt and success."""

    clock: FrozenClock = field(default_factory=FrozenClock)
    snapshot: CostSnapshot | None = None
    last_attempt: dt.datetime | None = None
    last_success: dt.datetime | None = None
    failed_stages: list[str] = field(default_factory=list)

    def health(self) -> Health:
        return Health(
            snapshot=lambda: self.snapshot,
            last_attempt=lambda: self.last_attempt,
            last_success=lambda: self.last_success,
            interval=INTERVAL,
            clock=self.clock,
            failed_stages=lambda: self.failed_stages,
        )

    def succeed(self, names: dict[str, str], totals: dict[dt.date, dict[str, Decimal]]) -> None:
        now = self.clock.now()
        self.snapshot = build_snapshot(now, names, totals, baseline_days=7)
        self.last_attempt = self.last_success = now
        self.failed_stages = []

    def fail(self, *stages: str) -> None:
        """A cycle that starts now and fails in `stages` (the snapshot, if any, stays the last good one)."""
        self.last_attempt = self.clock.now()
        self.failed_stages = list(stages)


@pytest.fixture
def state() -> LoopState:
    """A loop that has not run yet, at a frozen time."""
    return LoopState()


@pytest.fixture
def client(state: LoopState) -> Iterator[httpx.Client]:
    """An httpx client bound to a real WebServer on an ephemeral port, serving the app for `state`."""
    registry = CollectorRegistry()
    registry.register(CostCollector(lambda: state.snapshot, AlertPolicy(), state.clock))
    server = WebServer("127.0.0.1", 0, build_app(registry, state.health())).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as http:
            yield http
    finally:
        server.close()


def today_totals(state: LoopState, amount: str = "12.5") -> dict[dt.date, dict[str, Decimal]]:
    return {state.clock.now().date(): {"proj_x": Decimal(amount)}}


def test_metrics_empty_before_first_cycle(client: httpx.Client) -> None:
    """/metrics answers 200 with no cost samples until a cycle has succeeded."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "openai_daily_cost_usd" not in response.text


def test_metrics_after_snapshot(client: httpx.Client, state: LoopState) -> None:
    """/metrics serves the current snapshot's figures with the project labels."""
    state.succeed({"proj_x": "X-Ray"}, today_totals(state))
    text = client.get("/metrics").text
    assert 'openai_daily_cost_usd{project="X-Ray",project_id="proj_x"} 12.5' in text
    state.succeed({"proj_x": "X-Ray"}, today_totals(state, "13"))
    assert 'openai_daily_cost_usd{project="X-Ray",project_id="proj_x"} 13.0' in client.get("/metrics").text


def test_metrics_gzip(client: httpx.Client, state: LoopState) -> None:
    """/metrics honours Accept-Encoding: gzip like any Prometheus exporter."""
    state.succeed({"proj_x": "X-Ray"}, today_totals(state))
    with client.stream("GET", "/metrics", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())  # the bytes on the wire, before httpx decodes them
    assert response.headers["content-encoding"] == "gzip"
    assert b"openai_daily_cost_usd" in gzip.decompress(raw)


def test_healthz_starting_is_alive(client: httpx.Client) -> None:
    """/healthz is 200 before the loop's first attempt (the process is still starting)."""
    response = client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


@pytest.mark.parametrize(
    ("age", "status"),
    [
        (dt.timedelta(0), 200),
        (dt.timedelta(seconds=3 * INTERVAL + 120), 200),
        (dt.timedelta(seconds=3 * INTERVAL + 121), 503),
        (dt.timedelta(hours=2), 503),
    ],
)
def test_healthz_follows_last_attempt(client: httpx.Client, state: LoopState, age: dt.timedelta, status: int) -> None:
    """/healthz turns 503 once the last attempt is older than 3 intervals plus a 2-minute grace."""
    state.last_attempt = state.clock.now()
    state.clock.advance(age)
    response = client.get("/healthz")
    assert response.status_code == status
    assert response.text == ("ok\n" if status == 200 else "cycle loop stalled\n")


def test_healthz_recovers(client: httpx.Client, state: LoopState) -> None:
    """A stalled loop that attempts a cycle again is alive again, even if the attempt failed."""
    state.last_attempt = state.clock.now()
    state.clock.advance(dt.timedelta(hours=1))
    assert client.get("/healthz").status_code == 503
    state.last_attempt = state.clock.now()
    assert client.get("/healthz").status_code == 200


def test_readyz(client: httpx.Client, state: LoopState) -> None:
    """/readyz is 503 before the first snapshot and 200 after it."""
    before = client.get("/readyz")
    assert (before.status_code, before.text) == (503, "no successful cycle yet\n")
    state.succeed({}, today_totals(state))
    after = client.get("/readyz")
    assert (after.status_code, after.text) == (200, "ready\n")


def test_readyz_first_cycle_failed(client: httpx.Client, state: LoopState) -> None:
    """A first cycle that stored figures but failed a stage leaves /readyz 503, saying which stages failed."""
    state.snapshot = build_snapshot(state.clock.now(), {}, today_totals(state), baseline_days=7)
    state.fail("push")
    response = client.get("/readyz")
    assert (response.status_code, response.text) == (
        503,
        "no successful cycle yet: the last cycle failed (stages: push)\n",
    )


def test_readyz_turns_503_after_about_three_failed_cycles(client: httpx.Client, state: LoopState) -> None:
    """After a success, one or two failed cycles keep /readyz 200; the third in a row turns it 503 with the stages
    and the last success time, and the next success makes it ready again."""
    state.succeed({}, today_totals(state))
    statuses = []
    for _ in range(3):
        state.clock.advance(dt.timedelta(seconds=INTERVAL + 5))  # the wait, plus a 5-second cycle
        state.fail("costs", "push")
        statuses.append(client.get("/readyz").status_code)
    assert statuses == [200, 200, 503]
    text = client.get("/readyz").text
    assert text == "cycles failing since the last success at 2026-11-28 12:00 UTC (stages: costs, push)\n"
    state.succeed({}, today_totals(state))
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("age", "status"),
    [(dt.timedelta(seconds=3 * INTERVAL + 120), 200), (dt.timedelta(seconds=3 * INTERVAL + 121), 503)],
)
def test_readyz_stale_last_success(client: httpx.Client, state: LoopState, age: dt.timedelta, status: int) -> None:
    """A last success older than 3 intervals plus 2 minutes (no cycle finished since) makes /readyz 503."""
    state.succeed({}, today_totals(state))
    state.clock.advance(age)
    response = client.get("/readyz")
    assert response.status_code == status
    if status == 503:
        assert response.text == "last successful cycle at 2026-11-28 12:00 UTC, over 3 intervals ago\n"


def test_page_shows_the_failed_cycle(client: httpx.Client, state: LoopState) -> None:
    """While the last cycle failed, the page shows a banner with its stages and time; a success removes it."""
    state.succeed({"proj_x": "X-Ray"}, today_totals(state))
    state.clock.advance(dt.timedelta(minutes=5))
    state.fail("costs", "alerts")
    text = client.get("/").text
    assert "The last cycle failed (stages: costs, alerts) at 12:05 UTC" in text
    state.succeed({"proj_x": "X-Ray"}, today_totals(state))
    assert "The last cycle failed" not in client.get("/").text


def test_page_shows_a_failed_first_cycle(client: httpx.Client, state: LoopState) -> None:
    """A first cycle that failed before any figure shows the banner too, on the page with no figures."""
    state.fail("costs")
    assert "The last cycle failed (stages: costs) at 12:00 UTC" in client.get("/").text


@pytest.mark.parametrize("path", ["/", "/index.html"])
def test_page_escapes_project_names(client: httpx.Client, state: LoopState, path: str) -> None:
    """The spend page is HTML, not cached, and shows project names escaped."""
    state.succeed({"proj_x": EVIL_NAME}, today_totals(state))
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; Co" in response.text
    assert "<script>" not in response.text


def test_page_before_first_cycle(client: httpx.Client) -> None:
    """The spend page renders before any figures exist."""
    response = client.get("/")
    assert response.status_code == 200
    assert response.text.lstrip().lower().startswith("<!doctype html>")


def test_page_with_history(client: httpx.Client, state: LoopState) -> None:
    """The page shows projects that spent on earlier days of the history as well as today's."""
    today = state.clock.now().date()
    totals = {today - dt.timedelta(days=3): {"proj_old": Decimal(2)}, today: {"proj_x": Decimal(1)}}
    state.succeed({"proj_x": "Xylophone", "proj_old": "Oldtimer"}, totals)
    text = client.get("/").text
    assert "Xylophone" in text
    assert "Oldtimer" in text


def test_page_without_any_spend(client: httpx.Client, state: LoopState) -> None:
    """A snapshot with no spend renders the page with zero cards, the empty chart and table notes, no chart, no
    table, no alarm and a fresh last-success line."""
    state.succeed({}, {})
    response = client.get("/")
    assert response.status_code == 200
    text = response.text
    cards = re.findall(r'<div class="card"><b>([^<]*)</b><span>([^<]*)</span></div>', text)
    assert cards == [
        ("$0.00", "today so far"),
        ("$0.00", "usual by now"),
        ("$0.00", "spend, last 30 days"),
        ("0", "projects alerting"),
    ]
    assert '<p class="empty">No cost data yet' in text and '<p class="empty">No projects yet.</p>' in text
    assert '<svg class="chart"' not in text and "<table" not in text and 'class="warn"' not in text
    assert "last successful cycle: 2026-11-28 12:00 UTC (0 min ago)" in text


@pytest.mark.parametrize("path", ["/nope", "/metrics/extra", "/healthz/", "/favicon.ico"])
def test_unknown_path_is_404(client: httpx.Client, path: str) -> None:
    """Any other path is 404 with a hint listing the endpoints."""
    response = client.get(path)
    assert response.status_code == 404
    assert "/metrics" in response.text


def test_server_port_and_close() -> None:
    """The server reports its ephemeral port and stops listening after close()."""
    server = WebServer("127.0.0.1", 0, build_app(CollectorRegistry(), LoopState().health())).start()
    port = server.port
    assert port > 0
    server.close()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_server_url_has_the_port_it_got() -> None:
    """A server asked for port 0 gives its URL with the port the system picked (what the demo's banner shows)."""
    server = WebServer("127.0.0.1", 0, build_app(CollectorRegistry(), LoopState().health())).start()
    try:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        assert httpx.get(f"{server.url}/healthz", timeout=5, trust_env=False).status_code == 200
    finally:
        server.close()


@pytest.mark.parametrize(
    ("host", "family"),
    [("127.0.0.1", socket.AF_INET), ("0.0.0.0", socket.AF_INET), ("::", socket.AF_INET6), ("::1", socket.AF_INET6)],  # noqa: S104 - nothing binds
)
def test_server_class_family(host: str, family: socket.AddressFamily) -> None:
    """IPv6 listen addresses get an AF_INET6 server, everything else AF_INET."""
    assert server_class(host).address_family == family
