"""A fake OpenAI Admin API over HTTP on 127.0.0.1, serving a `FakeOrg`, with switchable faults.

Endpoints (openai-admin-openapi.yaml): `GET /v1/organization/costs` and `GET /v1/organization/projects`,
bearer auth with the admin key. Control endpoints (no auth, no faults, not logged), for tests that run the
fake in another process:

    GET  /_fake/faults        current `Faults` as JSON; POST the same shape (any subset of fields) to change
    GET  /_fake/requests      {"counts": {path: n}, "log": [[path, query], ...]} of the API requests so far
    POST /_fake/reset         clear the request log and every fault
    POST /_fake/spend         {"day": "YYYY-MM-DD", "project_id": str|null, "line_item": str, "amount": "1.5"}
    POST /_fake/scale_today   {"project_id": str|null, "factor": "4"}
    GET  /_fake/totals?day=YYYY-MM-DD   {"day": ..., "totals": {project_id: "12.3", ...}}: amounts are
                              decimal strings; the unattributed total (null project_id) is under key "null"

Deliberate simplifications: a bucket not starting at a UTC midnight reports its whole day; `api_key_ids` and
`group_by=api_key_id` are accepted but every `api_key_id` is null (keys are not simulated).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openai_cost_exporter.fake_org import NANOS, FakeOrg, FakeProject

logger = logging.getLogger(__name__)

COSTS_PATH = "/v1/organization/costs"
PROJECTS_PATH = "/v1/organization/projects"
AMOUNT_FORMATS = ("number", "string", "mixed")
MISSING_SCOPES = (
    "You have insufficient permissions for this operation. Missing scopes: api.usage.read. Check that you "
    "have the correct role in your organization (Owner), and if you're using a restricted API key, that it "
    "has the necessary scopes."
)
_SERVER_ERRORS = (500, 502, 503)
_DAY_SECONDS = 86400
_Params = dict[str, list[str]]
_Cell = tuple[str | None, str | None, int]


@dataclass
class Faults:
    """Failure switches; counters fire on the next N API requests and count down as they fire."""

    amount_format: str = "number"  # "number" | "string" | "mixed" (openai-admin-api.md §7.1)
    rate_limit_next: int = 0  # 429 with Retry-After: 1
    server_error_next: int = 0  # 500, 502 (an HTML page, like a proxy), 503 in turn
    not_found_next: int = 0  # 404, like the costs outage of 2025-11-09
    truncate_next: int = 0  # 200 with valid headers, the JSON body cut in half
    forbidden: bool = False  # 403 missing api.usage.read
    error_as_string: bool = False  # {"error": "..."} instead of the error object
    latency_seconds: float = 0.0  # added to every API response

    def update(self, changes: Mapping[str, object]) -> None:
        """Apply a partial change (such as a JSON body) all at once; ValueError if any field is bad."""
        clean = {name: _check_fault(self, name, value) for name, value in changes.items()}
        for name, value in clean.items():
            setattr(self, name, value)


def _check_fault(faults: Faults, name: str, value: object) -> object:
    if name not in {f.name for f in fields(faults)}:
        raise ValueError(f"unknown fault {name!r}")
    expected = type(getattr(faults, name))
    if expected is float and type(value) is int:
        value = float(value)
    if type(value) is not expected:
        raise ValueError(f"fault {name!r} must be a {expected.__name__}")
    if name == "amount_format" and value not in AMOUNT_FORMATS:
        raise ValueError(f"amount_format must be one of {AMOUNT_FORMATS}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"fault {name!r} must not be negative")
    return value


class _Reply(Exception):
    """An error response: raised while handling, rendered with the error envelope."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = "invalid_request_error"


def _bad(message: str, param: str) -> _Reply:
    return _Reply(400, message, param=param)


@dataclass
class Response:
    """What the handler writes: a body in one piece, or streamed in chunks."""

    status: int
    body: bytes | Iterable[str]
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _json_response(status: int, payload: object) -> Response:
    return Response(status, json.dumps(payload).encode())


# ---- query parsing ---------------------------------------------------------------------------------------


def _one(params: _Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _many(params: _Params, name: str) -> list[str]:
    """Both array encodings in use: `name=a&name=b` and the SDK's `name[]=a` (openai-admin-api.md §1.1)."""
    return params.get(name, []) + params.get(f"{name}[]", [])


def _int(params: _Params, name: str) -> int | None:
    raw = _one(params, name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise _bad(f"Invalid value for '{name}': expected an integer, got {raw[:40]!r}.", name)
    return int(raw)


def _limit(params: _Params, default: int, maximum: int) -> int:
    limit = _int(params, "limit")
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise _bad(f"Invalid value for 'limit': must be between 1 and {maximum}.", "limit")
    return limit


@dataclass(frozen=True, slots=True)
class CostsQuery:
    """A validated costs request: the page starts at `page_start`; `start_time` is the query's own."""

    start_time: int
    page_start: int
    end_time: int
    limit: int
    by_project: bool
    by_line_item: bool
    project_ids: frozenset[str | None] | None


def parse_costs_query(params: _Params, now: int) -> CostsQuery:
    """Validate the query string of `GET /organization/costs`; 400 `_Reply` on the first problem."""
    start = _int(params, "start_time")
    if start is None:
        raise _bad("Missing required parameter: 'start_time'.", "start_time")
    end = _int(params, "end_time")
    if end is not None and end <= start:
        raise _bad("'end_time' must be later than 'start_time'.", "end_time")
    if end is None:  # up to now; a start_time at or after now gives a page without buckets
        end = max(now, start)
    if _one(params, "bucket_width") not in (None, "1d"):
        raise _bad("Invalid value for 'bucket_width': only '1d' is supported.", "bucket_width")
    group_by = _many(params, "group_by")
    for value in group_by:
        if value not in ("project_id", "line_item", "api_key_id"):
            raise _bad(f"Invalid value for 'group_by': {value[:40]!r}.", "group_by")
    project_ids = _many(params, "project_ids")
    page = _one(params, "page")
    return CostsQuery(
        start_time=start,
        page_start=decode_cursor(page, start, end) if page else start,
        end_time=end,
        limit=_limit(params, 7, 180),
        by_project="project_id" in group_by,
        by_line_item="line_item" in group_by,
        project_ids=frozenset(project_ids) if project_ids else None,
    )


def encode_cursor(page_start: int, start_time: int) -> str:
    """Opaque to clients; like the spec's example it is two 64-bit timestamps in base64."""
    return "page_" + base64.b64encode(struct.pack(">qq", page_start, start_time)).decode()


def decode_cursor(cursor: str, start_time: int, end_time: int) -> int:
    """The start of the page a cursor points at; 400 if it is foreign to this query."""
    try:
        raw = base64.b64decode(cursor.removeprefix("page_"), validate=True)
        page_start, origin = struct.unpack(">qq", raw)
    except (binascii.Error, struct.error) as exc:
        raise _bad("Invalid 'page' cursor.", "page") from exc
    if not cursor.startswith("page_") or origin != start_time or not start_time < page_start < end_time:
        raise _bad("Invalid 'page' cursor: it does not belong to this query.", "page")
    return int(page_start)


def bucket_bounds(query: CostsQuery) -> tuple[list[tuple[int, int]], int | None]:
    """This page's buckets (cut at UTC midnights and at end_time) and the start of the next page, if any."""
    bounds: list[tuple[int, int]] = []
    t = query.page_start
    while t < query.end_time and len(bounds) < query.limit:
        nxt = min((t // _DAY_SECONDS + 1) * _DAY_SECONDS, query.end_time)
        bounds.append((t, nxt))
        t = nxt
    return bounds, (t if t < query.end_time else None)


# ---- costs rendering -------------------------------------------------------------------------------------


def wire_amount(nanos: int, amount_format: str, row: int) -> str:
    """One `amount.value` as JSON text; string forms rotate through the shapes seen live (§7.1)."""
    sign, (whole, frac) = ("-" if nanos < 0 else ""), divmod(abs(nanos), NANOS)
    plain = f"{sign}{whole}.{frac:09d}"
    if amount_format == "number" or (amount_format == "mixed" and row % 2 == 0):
        return plain
    if nanos == 0:
        return '"0E-6176"'
    shape = row % 3
    if shape == 1:  # 39 significant digits, same value
        return f'"{plain}{"0" * (39 - len(plain.replace("-", "").replace(".", "")))}"'
    if shape == 2:
        return f'"{nanos}E-9"'
    return f'"{plain}"'


def _group(cells: list[tuple[str | None, str, int]], query: CostsQuery) -> Iterable[_Cell]:
    if query.by_project and query.by_line_item:
        return cells
    if not query.by_project and not query.by_line_item:
        return [(None, None, sum(n for _, _, n in cells))] if cells else []
    sums: dict[str | None, int] = {}
    for p, li, n in cells:
        key = p if query.by_project else li
        sums[key] = sums.get(key, 0) + n
    if query.by_project:
        return [(p, None, n) for p, n in sums.items()]
    return [(None, li, n) for li, n in sums.items()]


class CostsRenderer:
    """Writes costs pages as JSON text, bucket by bucket, from precomputed fragments (fast for big orgs)."""

    def __init__(self, org: FakeOrg, amount_format: str) -> None:
        self._org = org
        self._format = amount_format
        self._row = 0
        self._tail = f',"api_key_id":null,"organization_id":{json.dumps(org.organization_id)}}}'
        self._projects = {
            p.id: f'"project_id":{json.dumps(p.id)},"project_name":{json.dumps(p.name)}' for p in org.projects
        }
        self._line_items: dict[str | None, str] = {None: "null"}

    def page(self, query: CostsQuery) -> Iterator[str]:
        """The whole page, one piece per bucket."""
        bounds, next_start = bucket_bounds(query)
        yield '{"object":"page","data":['
        for i, (start, end) in enumerate(bounds):
            yield ("," if i else "") + self.bucket(query, start, end)
        cursor = json.dumps(encode_cursor(next_start, query.start_time) if next_start else None)
        yield f'],"has_more":{json.dumps(next_start is not None)},"next_page":{cursor}}}'

    def bucket(self, query: CostsQuery, start: int, end: int) -> str:
        day = dt.datetime.fromtimestamp(start, dt.UTC)
        cells = self._org.cells(day.date(), query.project_ids, include_zero=self._format != "number")
        rows = ",".join(self._result(p, li, n) for p, li, n in _group(cells, query))
        return (
            f'{{"object":"bucket","start_time":{start},"end_time":{end},'
            f'"start_time_iso":"{day.isoformat()}","results":[{rows}]}}'
        )

    def _result(self, project_id: str | None, line_item: str | None, nanos: int) -> str:
        li = self._line_items.get(line_item)
        if li is None:
            li = self._line_items[line_item] = json.dumps(line_item)
        project = self._projects[project_id] if project_id is not None else '"project_id":null'
        self._row += 1
        if self._format == "number" and nanos >= 0:  # the common case, inline: big pages are hot
            whole, frac = divmod(nanos, NANOS)
            amount = f"{whole}.{frac:09d}"
        else:
            amount = wire_amount(nanos, self._format, self._row)
        return (
            f'{{"object":"organization.costs.result","amount":{{"value":{amount},"currency":"usd"}},'
            f'"line_item":{li},{project}{self._tail}'
        )


# ---- the service -----------------------------------------------------------------------------------------


def project_json(p: FakeProject) -> dict[str, Any]:
    """A project as the Projects API sends it."""
    return {
        "id": p.id,
        "object": "organization.project",
        "name": p.name,
        "created_at": p.created_at,
        "archived_at": p.archived_at,
        "status": p.status,
        "external_key_id": None,
    }


def mask_key(key: str) -> str:
    """What an error message may show of a presented key: never the whole of it."""
    return f"{key[:6]}***...{key[-4:]}" if len(key) >= 20 else "***"


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
        self._admin_key = admin_key
        self._address = (host, port)
        self._lock = threading.Lock()
        self._server_errors = 0
        self._ordered = sorted(org.projects, key=lambda p: (p.created_at, p.id))
        self._position = {p.id: i for i, p in enumerate(self._ordered)}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

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
        assert self._server is not None, "not started"
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
        if url.path.startswith("/_fake/"):
            return self._control(method, url.path, url.query, body)
        with self._lock:
            self.request_log.append((url.path, url.query))
        if self.faults.latency_seconds > 0:
            time.sleep(self.faults.latency_seconds)
        try:
            self._check_access(authorization)
            response = self._route(method, url.path, parse_qs(url.query, keep_blank_values=True))
        except _Reply as reply:
            return self._error(reply)
        return _truncate(response) if self._take("truncate_next") else response

    def _take(self, counter: str) -> bool:
        with self._lock:
            left = int(getattr(self.faults, counter))
            if left > 0:
                setattr(self.faults, counter, left - 1)
            return left > 0

    def _check_access(self, authorization: str | None) -> None:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _Reply(401, "You didn't provide an API key.", code="invalid_api_key")
        if not hmac.compare_digest(key.strip().encode(), self._admin_key.encode()):
            raise _Reply(401, f"Incorrect API key provided: {mask_key(key.strip())}.", code="invalid_api_key")
        if self.faults.forbidden:
            raise _Reply(403, MISSING_SCOPES)
        if self._take("rate_limit_next"):
            raise _Reply(429, "Rate limit reached for requests to the Admin API. Please try again in 1s.")
        if self._take("server_error_next"):
            with self._lock:
                status = _SERVER_ERRORS[self._server_errors % len(_SERVER_ERRORS)]
                self._server_errors += 1
            raise _Reply(status, "The server had an error while processing your request. Sorry about that!")
        if self._take("not_found_next"):
            raise _Reply(404, "Invalid URL (GET /v1/organization/costs)")

    def _route(self, method: str, path: str, params: _Params) -> Response:
        if method == "GET" and path == COSTS_PATH:
            query = parse_costs_query(params, int(self.org.clock.now().timestamp()))
            return Response(200, CostsRenderer(self.org, self.faults.amount_format).page(query))
        if method == "GET" and path == PROJECTS_PATH:
            return _json_response(200, self._projects(params))
        raise _Reply(404, f"Invalid URL ({method} {path})")

    def _projects(self, params: _Params) -> dict[str, Any]:
        limit = _limit(params, 20, 100)
        include = (_one(params, "include_archived") or "false").lower()
        if include not in ("true", "false"):
            raise _bad("Invalid value for 'include_archived': expected a boolean.", "include_archived")
        after = _one(params, "after")
        start = 0
        if after is not None:
            if after not in self._position:
                raise _bad(f"No project found with id {after[:40]!r}.", "after")
            start = self._position[after] + 1
        rest = [p for p in self._ordered[start:] if include == "true" or not p.archived]
        page = rest[:limit]
        return {
            "object": "list",
            "data": [project_json(p) for p in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(rest) > limit,
        }

    def _error(self, reply: _Reply) -> Response:
        headers = {"Retry-After": "1"} if reply.status == 429 else {}
        if reply.status == 502:  # a proxy in front answers, not the API: HTML, not JSON
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

    def _control(self, method: str, path: str, query: str, body: bytes) -> Response:
        try:
            payload = json.loads(body) if body else {}
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            result = self._control_action(method, path, parse_qs(query), payload)
        except _Reply as reply:
            return _json_response(reply.status, {"error": {"message": reply.message, "type": reply.type}})
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            return _json_response(400, {"error": {"message": f"bad control request: {exc!r}"}})
        return _json_response(200, result)

    def _control_action(self, method: str, path: str, params: _Params, payload: Any) -> object:
        action = (method, path)
        with self._lock:
            if action == ("GET", "/_fake/faults"):
                return asdict(self.faults)
            if action == ("POST", "/_fake/faults"):
                self.faults.update(payload)
                return asdict(self.faults)
            if action == ("GET", "/_fake/requests"):
                counts = Counter(p for p, _ in self.request_log)
                return {"counts": dict(counts), "log": [list(entry) for entry in self.request_log]}
            if action == ("POST", "/_fake/reset"):
                self.request_log.clear()
                self.faults.update(asdict(Faults()))
                return asdict(self.faults)
            return self._control_org(action, params, payload)

    def _control_org(self, action: tuple[str, str], params: _Params, payload: Any) -> object:
        if action == ("POST", "/_fake/spend"):
            day = dt.date.fromisoformat(payload["day"])
            amount = Decimal(str(payload["amount"]))
            self.org.set_cost(day, payload["project_id"], str(payload["line_item"]), amount)
            return {"ok": True}
        if action == ("POST", "/_fake/scale_today"):
            self.org.scale_today(payload["project_id"], Decimal(str(payload["factor"])))
            return {"ok": True}
        if action == ("GET", "/_fake/totals"):
            day = dt.date.fromisoformat(params["day"][0])
            totals = {str(p) if p else "null": str(v) for p, v in self.org.daily_totals(day).items()}
            return {"day": day.isoformat(), "totals": totals}
        raise _Reply(404, f"no control endpoint {action[0]} {action[1]}")


def _truncate(response: Response) -> Response:
    whole = response.body if isinstance(response.body, bytes) else "".join(response.body).encode()
    return Response(response.status, whole[: len(whole) // 2], response.headers, response.content_type)


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
