"""Replies that trickle or flood: a wall-clock deadline per request and a bound on the decoded body, for the Admin
API client and the push; and a stop (SIGTERM) that ends the process while a names request hangs."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import signal
import subprocess
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.errors import APIUnavailable, MalformedResponse, PushError
from openai_cost_exporter.core.models import CostPage, Project
from openai_cost_exporter.core.replies import ReplyTooSlow, read_reply
from openai_cost_exporter.export.push import Pusher
from openai_cost_exporter.fake.api import FakeAdminAPI, Faults
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.ingest.costs import Window, fetch_into_ledger
from openai_cost_exporter.sources.openai.client import AdminClient, build_http_client
from openai_cost_exporter.sources.openai.paging import costs_page_days
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state
from tests.clirun import ADMIN_KEY, clean_env, cli_now, command, run_once
from tests.stack import wait_until

BASE_URL = "https://openai.test/v1"
PROJECTS_PAGE = {"object": "list", "data": [{"id": "proj_a", "name": "A"}], "has_more": False}
MIB = 1024 * 1024
PROJECTS_PATH = "/v1/organization/projects"


class StepClock:
    """A monotonic clock that moves only when told: `tick` seconds per chunk a fake reply sends."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def trickled(body: bytes, clock: StepClock, *, tick: float, piece: int = 8) -> Iterator[bytes]:
    """`body` in pieces of `piece` bytes, the clock moving `tick` seconds before each (a slow server, no sleeping)."""
    for start in range(0, len(body), piece):
        clock.now += tick
        yield body[start : start + piece]


def gzip_bomb(decoded_bytes: int, prefix: bytes = b"") -> Iterator[bytes]:
    """A gzip stream of `prefix` and `decoded_bytes` zeros, compressed only as it is read (~1 KB per MiB)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    yield deflate.compress(prefix)
    for _ in range(decoded_bytes // MIB):
        if chunk := deflate.compress(zeros):
            yield chunk
    yield deflate.flush()


def streamed(status: int, chunks: Iterator[bytes], headers: dict[str, str] | None = None) -> httpx.Response:
    """A reply whose body is read from the generator as the client streams it (not read up front)."""
    return httpx.Response(status, content=chunks, headers=headers)


def admin_client(handler: httpx.MockTransport, **kwargs: Any) -> AdminClient:
    return AdminClient(build_http_client(BASE_URL, ADMIN_KEY, timeout=2.0, transport=handler), **kwargs)


# --- the Admin API client ------------------------------------------------------------------------------


def test_a_trickled_body_is_a_timeout_that_is_retried() -> None:
    """A body arriving a few bytes at a time (every read well inside the read timeout) fails its attempt at the
    wall-clock deadline, counted as a timeout, and is retried like one until the budget runs out."""
    clock = StepClock()
    body = json.dumps(PROJECTS_PAGE).encode()
    statuses: list[str] = []
    transport = httpx.MockTransport(lambda _: streamed(200, trickled(body, clock, tick=0.5)))
    client = admin_client(transport, clock=clock, on_request=lambda _, status: statuses.append(status))
    with pytest.raises(APIUnavailable, match=r"after 3 attempts: timeout \(no complete reply within 2 s\)"):
        client.list_projects()
    assert statuses == ["timeout"] * 3


def test_a_reply_within_the_deadline_is_read() -> None:
    """A slow body that is complete before the deadline is parsed as usual."""
    clock = StepClock()
    body = json.dumps(PROJECTS_PAGE).encode()
    transport = httpx.MockTransport(lambda _: streamed(200, trickled(body, clock, tick=0.01)))
    assert admin_client(transport, clock=clock).list_projects() == [Project("proj_a", "A", False)]


def test_a_gzip_bomb_stops_at_the_size_limit_without_decoding_it_all() -> None:
    """A 256 MiB body of zeros sent as a few hundred KB of gzip is refused at 64 MiB as MalformedResponse, not
    retried, and decoding it never holds much more than the limit in memory."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return streamed(200, gzip_bomb(256 * MIB), {"Content-Encoding": "gzip"})

    tracemalloc.start()
    try:
        with pytest.raises(MalformedResponse, match=r"GET /organization/projects: the reply is larger than 64 MiB"):
            admin_client(httpx.MockTransport(handler)).list_projects()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(requests) == 1
    assert peak < 100 * MIB


def test_a_gzip_reply_is_decoded_and_only_gzip_is_asked_for() -> None:
    """A gzip-encoded page, streamed in small pieces, reads as the same JSON; the request asks for gzip alone."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Accept-Encoding"])
        packed = gzip.compress(json.dumps(PROJECTS_PAGE).encode())
        return streamed(200, (packed[i : i + 5] for i in range(0, len(packed), 5)), {"Content-Encoding": "gzip"})

    assert admin_client(httpx.MockTransport(handler)).list_projects() == [Project("proj_a", "A", False)]
    assert seen == ["gzip"]


def test_stacked_encodings_are_a_retried_decoding_error() -> None:
    """A body gzipped twice (`Content-Encoding: gzip, gzip`, a bomb of bombs) is refused as a decoding error,
    retried, then APIUnavailable."""
    statuses: list[str] = []
    twice = gzip.compress(gzip.compress(json.dumps(PROJECTS_PAGE).encode()))
    transport = httpx.MockTransport(lambda _: streamed(200, iter([twice]), {"Content-Encoding": "gzip, gzip"}))
    client = admin_client(transport, on_request=lambda _, status: statuses.append(status))
    with pytest.raises(APIUnavailable, match=r"decoding_error .*stacked encodings are not supported"):
        client.list_projects()
    assert statuses == ["decoding_error"] * 3


def test_a_huge_error_page_is_cut_and_its_status_still_decides() -> None:
    """A 503 with a 100 MiB body is read only to its first 64 KiB: still a retried 503, its text quoted, and the
    rest never held in memory."""

    def page() -> Iterator[bytes]:
        yield b"<html>overloaded</html>"
        for _ in range(100):
            yield b" " * MIB

    tracemalloc.start()
    try:
        with pytest.raises(APIUnavailable, match=r"after 3 attempts: HTTP 503: <html>overloaded</html>"):
            admin_client(httpx.MockTransport(lambda _: streamed(503, page()))).list_projects()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB


def test_read_reply_checks_the_deadline_once_the_headers_are_in() -> None:
    """Headers that arrive after the deadline fail the reply before its body is read."""
    clock = StepClock()
    response = httpx.Response(200, content=iter([b"{}"]), request=httpx.Request("GET", BASE_URL))
    with pytest.raises(ReplyTooSlow):
        read_reply(response, limit=MIB, deadline=clock.now - 1, clock=clock)


def test_a_trickling_fake_api_is_cut_at_the_deadline_over_a_real_socket() -> None:
    """Against the fake API on 127.0.0.1 with its trickle fault, one attempt ends at the deadline (0.5 s), not when
    the trickle would (about a minute for a projects page)."""
    org = FakeOrg.generate(seed=3, project_count=5, clock=FrozenClock(dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)))
    with FakeAdminAPI(org, admin_key=ADMIN_KEY, faults=Faults(trickle_seconds=0.05)) as api:
        http = build_http_client(api.base_url, ADMIN_KEY, timeout=5)
        with http:
            client = AdminClient(http, deadline=0.5)
            started = time.monotonic()
            with pytest.raises(APIUnavailable, match=r"timeout \(no complete reply within 0.5 s\)"):
                client.list_projects()
            elapsed = time.monotonic() - started
    assert elapsed < 3 * (0.5 + 0.5)  # three attempts (test mode: no back-off), each cut within one piece


# --- the push ------------------------------------------------------------------------------------------


def test_a_trickled_push_reply_is_a_push_error_at_the_deadline() -> None:
    """A push target that trickles its answer fails the push at the wall-clock deadline, with one clear reason."""
    clock = StepClock()
    transport = httpx.MockTransport(lambda _: streamed(204, trickled(b"x" * 400, clock, tick=0.5)))
    with httpx.Client(transport=transport, timeout=3) as http:
        pusher = Pusher(http, "http://vm.test/api/v1/import/prometheus", {}, clock=clock)
        with pytest.raises(PushError, match=r"vm.test/api/v1/import/prometheus failed: no complete reply within 3 s"):
            pusher.push(CollectorRegistry())


def test_a_flooding_push_reply_is_read_only_to_a_mebibyte() -> None:
    """A 400 whose gzip body inflates to 256 MiB is a PushError quoting its start, decoded no further than 1 MiB."""
    sent: list[bytes] = []

    def bomb() -> Iterator[bytes]:
        for chunk in gzip_bomb(256 * MIB, prefix=b"cannot parse line "):
            sent.append(chunk)
            yield chunk

    transport = httpx.MockTransport(lambda _: streamed(400, bomb(), {"Content-Encoding": "gzip"}))
    with httpx.Client(transport=transport, timeout=3) as http, pytest.raises(PushError, match="HTTP 400: cannot parse"):
        Pusher(http, "http://vm.test/import", {}).push(CollectorRegistry())
    assert sum(map(len, sent)) < 64 * 1024  # a few KB of the bomb's ~250 KB were read before it stopped


# --- the names thread and SIGTERM ------------------------------------------------------------------------


class _HangingNames:
    """A source whose costs are empty and whose names request records the thread it runs in."""

    def __init__(self) -> None:
        self.daemon: bool | None = None

    def page_days(self, *, line_items: bool, api_keys: bool = False) -> int:
        """Days per costs page, as the OpenAI client pages."""
        return costs_page_days(line_items, api_keys)

    def iter_costs(
        self,
        start: dt.date,
        end: dt.date,
        *,
        line_items: bool,
        limit: int,
        project_ids: Sequence[str] = (),
        api_keys: bool = False,
    ) -> Iterator[CostPage]:
        return iter([CostPage(days=(start,), rows=(), rejected=0)])

    def list_projects(self) -> list[Project]:
        self.daemon = threading.current_thread().daemon
        return []


def test_names_are_fetched_in_a_daemon_thread(tmp_path: Path) -> None:
    """The names request runs in a daemon thread, which the interpreter does not wait for at exit (an executor's
    worker would keep a stopped process alive while its request hangs)."""
    source = _HangingNames()
    conn = open_state(tmp_path / "state.sqlite")
    try:
        day = dt.date(2026, 11, 1)
        now = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
        fetch_into_ledger(
            source, Ledger(conn), Window(day, day + dt.timedelta(days=1), False, 1), now, refresh_names=True
        )
    finally:
        conn.close()
    assert source.daemon is True


def _trickling_api(path: str = "") -> FakeAdminAPI:
    org = FakeOrg.generate(seed=5, project_count=20, clock=FrozenClock(dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)))
    return FakeAdminAPI(org, admin_key=ADMIN_KEY, faults=Faults(trickle_seconds=0.2, trickle_path=path))


def test_run_once_against_a_trickling_api_ends_with_one_clear_line(tmp_path: Path) -> None:
    """`run --once --request-timeout 2` against an API that trickles every reply ends within the retry budget
    (4 attempts of 2 s and their back-off), exit 1, with one error line naming the timeout."""
    with _trickling_api() as api:
        started = time.monotonic()
        result = run_once(api.base_url, tmp_path, "--request-timeout", "2", "--no-usage", now=cli_now(api.org))
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.output
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert "costs failed: GET /organization/costs failed after 4 attempts: timeout" in errors[0]
    assert "no complete reply within 2 s" in errors[0]
    assert elapsed < 30, result.stderr
    assert "Traceback" not in result.output and ADMIN_KEY not in result.output


def test_sigterm_ends_run_while_the_names_request_trickles(tmp_path: Path) -> None:
    """`run` sent SIGTERM while its projects request trickles (within every timeout) exits within seconds."""
    with _trickling_api(PROJECTS_PATH) as api:
        proc = subprocess.Popen(
            command("run", "--base-url", api.base_url, "--state-dir", str(tmp_path), "--listen", "", "--no-usage"),
            env=clean_env(now=cli_now(api.org)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Logged as it is received: from then on the reply trickles for minutes (20 projects, 8 bytes a piece).
            wait_until(lambda: api.request_counts().get(PROJECTS_PATH, 0) > 0, 30, "the projects request")
            proc.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            _, err = proc.communicate(timeout=30)
            elapsed = time.monotonic() - stopped_at
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert elapsed < 8, err
    assert "received SIGTERM, stopping" in err and "exiting anyway" in err
    assert proc.returncode == 0, err
    assert "Traceback" not in err and ADMIN_KEY not in err
