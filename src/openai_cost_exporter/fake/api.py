"""A fake OpenAI Admin API over HTTP on 127.0.0.1, serving a `FakeOrg`, with switchable faults.

This module owns the server: routing, bearer auth, applying `Faults` (fake/faults.py) and error envelopes. The
pages themselves come from fake/costs.py, fake/usage.py, fake/projects.py, fake/api_keys.py and fake/limits.py;
the `/_fake/` control endpoints, for tests that run the fake in another process, from fake/control.py.

Endpoints (openai-admin-openapi.yaml): `GET /v1/organization/costs`, `GET /v1/organization/projects`,
`GET /v1/organization/usage/completions`, `GET /v1/organization/usage/embeddings`,
`GET /v1/organization/projects/{project_id}/api_keys`, `GET /v1/organization/spend_limit` and
`GET /v1/organization/projects/{project_id}/spend_limit`, bearer auth with the admin key. An unknown project is
a 404; so is a missing hard spend limit, or `200 {}` with the `spend_limit_empty` fault (§9).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from openai_cost_exporter.fake.api_keys import api_keys_page
from openai_cost_exporter.fake.control import PREFIX as CONTROL_PREFIX
from openai_cost_exporter.fake.control import Control
from openai_cost_exporter.fake.costs import CostsRenderer, parse_costs_query
from openai_cost_exporter.fake.faults import Faults as Faults  # noqa: PLC0414 (explicit re-export for the CLI, tests)
from openai_cost_exporter.fake.http import Params, Reply, Response, json_response, trickle, truncate
from openai_cost_exporter.fake.limits import spend_limit_json
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.fake.projects import ProjectsListing
from openai_cost_exporter.fake.usage import UsageRenderer, parse_usage_query

logger = logging.getLogger(__name__)

COSTS_PATH = "/v1/organization/costs"
PROJECTS_PATH = "/v1/organization/projects"
SPEND_LIMIT_PATH = "/v1/organization/spend_limit"
USAGE_PATHS = {
    "/v1/organization/usage/completions": "completions",
    "/v1/organization/usage/embeddings": "embeddings",
}
MISSING_SCOPES = (
    "You have insufficient permissions for this operation. Missing scopes: api.usage.read. Check that you "
    "have the correct role in your organization (Owner), and if you're using a restricted API key, that it "
    "has the necessary scopes."
)
_SERVER_ERRORS = (HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.BAD_GATEWAY, HTTPStatus.SERVICE_UNAVAILABLE)
_MASK_MIN_LENGTH = 20  # shorter keys would show too much of themselves in 10 characters


def mask_key(key: str) -> str:
    """What an error message may show of a presented key: never the whole of it."""
    return f"{key[:6]}***...{key[-4:]}" if len(key) >= _MASK_MIN_LENGTH else "***"


class FakeAdminAPI:
    """The fake Admin API: `start()` serves it on a thread and returns the base URL (`.../v1`)."""

    def __init__(
        self,
        org: FakeOrg,
        *,
        admin_key: str = "sk-admin-fake",
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.org = org
        self.faults = faults or Faults()
        self.request_log: list[tuple[str, str]] = []
        self.faults_fired: Counter[str] = Counter()  # fault counter name -> times it fired
        self._admin_key = admin_key
        self._address = (host, port)
        self._lock = threading.Lock()
        self._server_errors = 0
        self._listing = ProjectsListing(org.projects)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._control = Control(
            org, self.faults, request_log=self.request_log, faults_fired=self.faults_fired, lock=self._lock
        )

    def __repr__(self) -> str:
        return f"FakeAdminAPI(projects={len(self.org.projects)}, address={self._address})"

    def __enter__(self) -> FakeAdminAPI:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> str:
        """Listen and serve in a daemon thread; returns `http://HOST:PORT/v1` (again, if already started)."""
        if self._server is not None:
            return self.base_url
        self._server = _Server(self._address, self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Admin API is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def request_counts(self) -> dict[str, int]:
        """API requests so far, by path."""
        with self._lock:
            return dict(Counter(path for path, _ in self.request_log))

    def handle(self, method: str, target: str, authorization: str | None, body: bytes) -> Response:
        """Answer one HTTP request (the socket-free core of the server)."""
        url = urlsplit(target)
        if url.path.startswith(CONTROL_PREFIX):
            return self._control.handle(method, url.path, url.query, body)
        with self._lock:
            self.request_log.append((url.path, url.query))
        if self.faults.latency_seconds > 0:
            time.sleep(self.faults.latency_seconds)
        try:
            self._check_access(authorization)
            response = self._route(method, url.path, parse_qs(url.query, keep_blank_values=True))
        except Reply as reply:
            response = self._error(reply)
        else:
            response = truncate(response) if self._take("truncate_next") else response
        pause, path = self.faults.trickle_seconds, self.faults.trickle_path
        return trickle(response, pause) if pause > 0 and path in ("", url.path) else response

    def _take(self, counter: str) -> bool:
        with self._lock:
            left = int(getattr(self.faults, counter))
            if left > 0:
                setattr(self.faults, counter, left - 1)
                self.faults_fired[counter] += 1
            return left > 0

    def _check_access(self, authorization: str | None) -> None:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Reply(401, "You didn't provide an API key.", code="invalid_api_key")
        if not hmac.compare_digest(key.strip().encode(), self._admin_key.encode()):
            raise Reply(401, f"Incorrect API key provided: {mask_key(key.strip())}.", code="invalid_api_key")
        if self.faults.forbidden:
            raise Reply(403, MISSING_SCOPES)
        if self._take("rate_limit_next"):
            raise Reply(429, "Rate limit reached for requests to the Admin API. Please try again in 1s.")
        if self._take("server_error_next"):
            with self._lock:
                status = _SERVER_ERRORS[self._server_errors % len(_SERVER_ERRORS)]
                self._server_errors += 1
            raise Reply(status, "The server had an error while processing your request. Sorry about that!")
        if self._take("not_found_next"):
            raise Reply(404, "Invalid URL (GET /v1/organization/costs)")

    def _route(self, method: str, path: str, params: Params) -> Response:
        if method == "GET" and path == COSTS_PATH:
            query = parse_costs_query(params, int(self.org.clock.now().timestamp()))
            return Response(200, CostsRenderer(self.org, self.faults.amount_format).page(query))
        if method == "GET" and path == PROJECTS_PATH:
            return json_response(200, self._listing.page(params))
        if method == "GET" and path in USAGE_PATHS and self.faults.usage_forbidden:
            raise Reply(403, MISSING_SCOPES)  # a key that reads costs but not usage
        if method == "GET" and path in USAGE_PATHS:
            usage = parse_usage_query(USAGE_PATHS[path], params, int(self.org.clock.now().timestamp()))
            return Response(200, UsageRenderer(self.org).page(usage))
        if method == "GET" and path == SPEND_LIMIT_PATH:
            return self._spend_limit(None)
        if method == "GET" and path.startswith(PROJECTS_PATH + "/"):
            return self._project_resource(path, params)
        raise Reply(404, f"Invalid URL ({method} {path})")

    def _project_resource(self, path: str, params: Params) -> Response:
        """`.../projects/{project_id}/api_keys` or `.../spend_limit`; 404 for an unknown project."""
        raw_id, _, resource = path.removeprefix(PROJECTS_PATH + "/").partition("/")
        if resource not in ("api_keys", "spend_limit"):
            raise Reply(404, f"Invalid URL (GET {path})")
        project_id = unquote(raw_id)
        try:
            keys = self.org.api_keys(project_id)
        except KeyError:
            raise Reply(404, f"No project found with id {project_id[:40]!r}.", param="project_id") from None
        if resource == "api_keys":
            return json_response(200, api_keys_page(keys, params, self.faults.key_page_cap))
        return self._spend_limit(project_id)

    def _spend_limit(self, project_id: str | None) -> Response:
        limit = self.org.spend_limits.get(project_id)
        if limit is not None:
            return json_response(200, spend_limit_json(project_id, limit))
        if self.faults.spend_limit_empty:
            return json_response(200, {})
        holder = "organization" if project_id is None else "project"
        raise Reply(404, f"No hard spend limit is set for this {holder}.")

    def _error(self, reply: Reply) -> Response:
        headers = {"Retry-After": "1"} if reply.status == HTTPStatus.TOO_MANY_REQUESTS else {}
        if reply.status == HTTPStatus.BAD_GATEWAY:  # a proxy in front answers, not the API: HTML, not JSON
            return Response(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", headers, "text/html")
        error: object = {
            "message": reply.message,
            "type": reply.type,
            "param": reply.param,
            "code": reply.code,
        }
        if self.faults.error_as_string:
            error = reply.message
        return Response(reply.status, json.dumps({"error": error}).encode(), headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: FakeAdminAPI) -> None:
        super().__init__(address, _Handler)
        self.api = api


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; streamed bodies use chunked encoding
    timeout = 30  # an idle keep-alive connection does not hold a thread forever
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake api: " + format, *args)

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            response = self.server.api.handle(method, self.path, self.headers.get("Authorization"), body)
            self._write(response)
        except ConnectionError:
            logger.debug("fake api: client went away")

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if isinstance(response.body, bytes):
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in response.body:
            data = piece.encode()
            if data:
                self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")


def serve_forever(
    *,
    host: str,
    port: int,
    org: FakeOrg,
    admin_key: str,
    faults: Faults | None,
    stop: threading.Event,
    on_ready: Callable[[str], None],
) -> None:
    """Serve until `stop` is set (the `fake-api` CLI command); `on_ready` gets the base URL."""
    with FakeAdminAPI(org, admin_key=admin_key, faults=faults, host=host, port=port) as api:
        on_ready(api.base_url)
        stop.wait()
