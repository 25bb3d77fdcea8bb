"""Push to a VictoriaMetrics-like import endpoint: body, labels, failures, credentials kept out of messages."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import math
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from openai_cost_exporter.core.errors import PushError
from openai_cost_exporter.export.collector import DAILY_COST, LINE_ITEM_COST, HistoryCollector, day_sample_time
from openai_cost_exporter.export.push import Pusher, TextRegistry, safe_url, sample_value
from tests.stack import VictoriaMetrics

PASSWORD = "PUSHPASSWORD-s3cr3t"  # noqa: S105 - a fake credential that must never show up in messages


@dataclass
class Received:
    """One request as the fake import endpoint saw it."""

    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeImport:
    """A real HTTP server on 127.0.0.1:0; `/status/NNN` answers NNN, `/drop` hangs up, anything else 204."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def make_handler(fake_box: list[FakeImport]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            fake_box[0].received.append(
                Received(parts.path, parse_qsl(parts.query), {k.lower(): v for k, v in self.headers.items()}, body)
            )
            if parts.path == "/drop":
                self.close_connection = True
                return
            status = int(parts.path.rsplit("/", 1)[1]) if parts.path.startswith("/status/") else 204
            text = b"cannot parse line\nsecond line of the error\n" if status != 204 else b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output clean."""

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeImport]:
    """A running fake import endpoint, shut down and closed after the test."""
    box: list[FakeImport] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(box))
    box.append(FakeImport(server))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield box[0]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An httpx client closed after the test."""
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry with two timestamped history samples."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(HistoryCollector({dt.date(2026, 11, 27): {"a": Decimal("1.5"), "b": Decimal(2)}}, {"a": "A"}))
    return reg


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://pushuser:{PASSWORD}@")


def test_push_sends_exposition_with_labels(fake: FakeImport, http: httpx.Client, registry: CollectorRegistry) -> None:
    """The body is the registry's text exposition; job and extra labels travel as extra_label arguments."""
    pusher = Pusher(http, f"{fake.base}/api/v1/import/prometheus", {"job": "openai", "team": "ml", "env": "a b=c"})
    sent = pusher.push(registry)
    [request] = fake.received
    assert request.path == "/api/v1/import/prometheus"
    assert request.body == generate_latest(registry)
    assert sent == len(request.body)
    assert request.query == [("extra_label", "env=a b=c"), ("extra_label", "job=openai"), ("extra_label", "team=ml")]
    assert request.headers["content-type"] == "text/plain"


def test_push_keeps_the_urls_own_query(fake: FakeImport, http: httpx.Client, registry: CollectorRegistry) -> None:
    """Arguments already in the push URL (an extra_label, a tenant) are sent along with ours, not dropped."""
    pusher = Pusher(http, f"{fake.base}/insert?extra_label=dc=eu&tenant=7", {"job": "j"})
    pusher.push(registry)
    assert sorted(fake.received[0].query) == [("extra_label", "dc=eu"), ("extra_label", "job=j"), ("tenant", "7")]


def test_push_without_labels(fake: FakeImport, http: httpx.Client, registry: CollectorRegistry) -> None:
    """With no labels the URL carries no query at all."""
    Pusher(http, f"{fake.base}/import", {}).push(registry)
    assert fake.received[0].query == []


def test_push_sends_basic_auth(fake: FakeImport, http: httpx.Client, registry: CollectorRegistry) -> None:
    """user:pass@ in the push URL becomes a basic-auth header."""
    Pusher(http, with_credentials(f"{fake.base}/import"), {"job": "j"}).push(registry)
    expected = base64.b64encode(f"pushuser:{PASSWORD}".encode()).decode()
    assert fake.received[0].headers["authorization"] == f"Basic {expected}"


@pytest.mark.parametrize("status", [400, 401, 404, 500, 503, 302])
def test_http_error_is_push_error(
    fake: FakeImport, http: httpx.Client, registry: CollectorRegistry, status: int
) -> None:
    """A non-2xx answer raises PushError with the status and the server's text on one line, no credentials."""
    pusher = Pusher(http, with_credentials(f"{fake.base}/status/{status}"), {"job": "j"})
    with pytest.raises(PushError) as info:
        pusher.push(registry)
    message = str(info.value)
    assert f"HTTP {status}" in message
    assert "cannot parse line second line of the error" in message
    assert "\n" not in message
    assert PASSWORD not in message
    assert "pushuser" not in message
    assert f"127.0.0.1:{fake.server.server_address[1]}/status/{status}" in message


def test_long_error_text_is_cut(http: httpx.Client, registry: CollectorRegistry) -> None:
    """A huge error page is cut to a short detail."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="x" * 10_000)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client, pytest.raises(PushError) as info:
        Pusher(client, "http://vm/import", {}).push(registry)
    assert len(str(info.value)) < 300


def test_connection_refused_is_push_error(http: httpx.Client, registry: CollectorRegistry) -> None:
    """A closed port raises PushError naming the error kind, without the URL's credentials."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pusher = Pusher(http, f"http://pushuser:{PASSWORD}@127.0.0.1:{port}/import", {"job": "j"})
    with pytest.raises(PushError, match=r"ConnectError") as info:
        pusher.push(registry)
    assert PASSWORD not in str(info.value)
    assert "\n" not in str(info.value)


def test_hang_up_is_push_error(fake: FakeImport, http: httpx.Client, registry: CollectorRegistry) -> None:
    """A server that closes the connection without answering raises PushError."""
    with pytest.raises(PushError, match=r"RemoteProtocolError"):
        Pusher(http, with_credentials(f"{fake.base}/drop"), {}).push(registry)


def test_debug_log_and_repr_hide_credentials(
    fake: FakeImport, http: httpx.Client, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """The debug line after a push and the Pusher's repr show the URL without user-info."""
    pusher = Pusher(http, with_credentials(f"{fake.base}/import"), {"job": "j"})
    with caplog.at_level(logging.DEBUG, logger="openai_cost_exporter.export.push"):
        pusher.push(registry)
    assert "pushed" in caplog.text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(pusher)
    assert repr(pusher) == f"Pusher('{fake.base}/import')"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://u:p@vm:8428/api/v1/import/prometheus?x=1#f", "http://vm:8428/api/v1/import/prometheus"),
        ("https://user@vm.example/import", "https://vm.example/import"),
        ("http://vm/import", "http://vm/import"),
        ("http://u:p@[::1]:8428/import", "http://[::1]:8428/import"),
        ("http://u:p@vm:notaport/import", "http://vm/import"),
        ("http://vm:0/import", "http://vm:0/import"),
    ],
)
def test_safe_url(url: str, expected: str) -> None:
    """safe_url drops user-info, query and fragment, keeps scheme, host, port and path."""
    assert safe_url(url) == expected


# ---- timestamped history written directly -----------------------------------------------------------------

#: Names that need escaping in the text format, or more than one byte a character (an emoji: four).
AWKWARD = ['Team "Quotes" Bot', "C:\\ml\\batch jobs\\", "Line one\nLine two", "Übersetzung 🚀 東京", '\\"\n all 🎉']
DAYS = [dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27)]


def awkward_history(name: str) -> HistoryCollector:
    """Three closed days (one a third revision, one without spend) of three projects, line items with `name` too."""
    totals = {
        DAYS[0]: {"proj_a": Decimal("1.5"), "proj_b": Decimal("1234567.891")},
        DAYS[1]: {"proj_a": Decimal("-0.25"), "unattributed": Decimal("0E-6176")},
        DAYS[2]: {},
    }
    items = {
        DAYS[0]: {("proj_a", f"{name}, input"): Decimal("0.75"), ("proj_a", "gpt-4o, output"): Decimal("1E-7")},
        DAYS[1]: {("proj_a", 'o3 "pro", output'): Decimal("39.000000000000000000000000000000000001")},
    }
    names = {"proj_a": name, "proj_b": "B"}
    stamps = {DAYS[1]: day_sample_time(DAYS[1], 3)}
    return HistoryCollector(totals, names, items, also_projects=["proj_c"], stamps=stamps)


@pytest.mark.parametrize("name", AWKWARD)
def test_history_text_is_what_prometheus_client_writes(name: str) -> None:
    """The directly written history is byte for byte prometheus-client's exposition of the same collector: escaping,
    label order, Go's float format, millisecond stamps of revisions, zeros and HELP/TYPE lines included."""
    history = awkward_history(name)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(history)
    assert history.text() == generate_latest(registry)


def test_line_starts_are_kept_across_chunks() -> None:
    """A cache of line starts shared by two collectors of the same names gives the same text as none at all."""
    prefixes: dict[tuple[str, ...], bytes] = {}
    first, second = awkward_history(AWKWARD[0]), awkward_history(AWKWARD[0])
    assert first.text(prefixes) == first.text()
    assert prefixes and second.text(prefixes) == second.text()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"), (-0.0, "-0.0"), (1.5, "1.5"), (1e-7, "1e-07"), (123456.789, "123456.789"),
        (999999.999999, "999999.999999"), (1e6, "1e+06"), (1234567.891, "1.234567891e+06"), (1e16, "1e+16"),
        (-1e7, "-10000000.0"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"),
    ],
)  # fmt: skip
def test_sample_value_is_prometheus_clients_format(value: float, text: str) -> None:
    """Sample values are written as prometheus-client writes them (Go's format: exponents from a million up)."""
    assert sample_value(value) == text


def test_a_text_registry_is_pushed_as_written(fake: FakeImport, http: httpx.Client) -> None:
    """A TextRegistry's text is the body as it is, and a reader of the registry gets the same families back."""
    text = awkward_history(AWKWARD[3]).text()
    registry = TextRegistry(text)
    sent = Pusher(http, f"{fake.base}/api/v1/import/prometheus", {"job": "j"}).push(registry)
    assert fake.received[0].body == text and sent == len(text)
    assert generate_latest(registry) == text


@pytest.mark.stack
@pytest.mark.parametrize("name", AWKWARD)
def test_victoria_metrics_reads_back_what_was_written(vm: VictoriaMetrics, http: httpx.Client, name: str) -> None:
    """Pushed to a real VictoriaMetrics, the directly written history reads back with the names, line items, values
    and millisecond stamps it was written with (zeros for the days a project had no spend)."""
    run = f"text-{AWKWARD.index(name)}"
    Pusher(http, vm.import_url, {"job": "j", "run": run}).push(TextRegistry(awkward_history(name).text()))
    vm.force_flush()
    got = {
        (series["metric"]["__name__"], series["metric"]["project"], series["metric"].get("line_item")): dict(
            zip(series["timestamps"], series["values"], strict=True)
        )
        for series in vm.export(f'{{run="{run}"}}')
    }
    ms = [
        int(day_sample_time(DAYS[0]) * 1000),
        int(day_sample_time(DAYS[1]) * 1000) + 3,
        int(day_sample_time(DAYS[2]) * 1000),
    ]
    assert got[(DAILY_COST, name, None)] == {ms[0]: 1.5, ms[1]: -0.25, ms[2]: 0.0}
    assert got[(DAILY_COST, "B", None)] == {ms[0]: 1234567.891, ms[1]: 0.0, ms[2]: 0.0}
    assert got[(DAILY_COST, "proj_c", None)] == dict.fromkeys(ms, 0.0)
    assert got[(LINE_ITEM_COST, name, f"{name}, input")] == {ms[0]: 0.75}
    assert got[(LINE_ITEM_COST, name, 'o3 "pro", output')] == {ms[1]: 39.0}
    assert got[(LINE_ITEM_COST, name, "gpt-4o, output")] == {ms[0]: 1e-7}
