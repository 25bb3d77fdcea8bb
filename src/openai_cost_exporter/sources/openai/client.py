"""Client of the OpenAI Admin API: costs, usage, projects, and each project's API keys and hard spend limit.

Owns the requests: paging, retries and the mapping of HTTP failures to `errors.py`; reading the bodies is
`sources/openai/responses.py`'s job. Every quirk it guards against is listed in openai-admin-api.md §7. Retries go
through stamina (one `retry_context` per request); the client raises only errors from `errors.py`, with the
admin key masked.
Thread-safe: it keeps no state between calls, so two threads may share one client and one `httpx.Client`.

httpx's timeouts bound each read, not a reply: a server that trickles its body a few bytes at a time never trips
them, and a small gzip body can decode to gigabytes. So every reply is read through `read_reply`, which holds it
to a wall-clock deadline and a decoded size (`push.py` reads its replies the same way).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import stamina

from openai_cost_exporter import __version__
from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.errors import APIUnavailable, GroupingRefused, MalformedResponse, OpenAIError
from openai_cost_exporter.core.models import API_KEYS_EPOCH, ApiKey, CostPage, Project, SpendLimit, day_start
from openai_cost_exporter.core.redact import redact
from openai_cost_exporter.core.replies import ACCEPT_ENCODING, ReplyTooLarge, ReplyTooSlow, read_reply, reply_deadline
from openai_cost_exporter.sources.openai.directory_responses import parse_api_keys, parse_spend_limit
from openai_cost_exporter.sources.openai.failures import Transient, failure_kind, status_error
from openai_cost_exporter.sources.openai.paging import costs_page_days
from openai_cost_exporter.sources.openai.responses import (
    Json,
    decode_json,
    has_more_pages,
    next_after_cursor,
    next_page_cursor,
    parse_cost_page,
    parse_projects,
)
from openai_cost_exporter.sources.openai.usage_responses import UsagePage, parse_usage_page, usage_query

log = logging.getLogger(__name__)

COSTS_PATH = "/organization/costs"
PROJECTS_PATH = "/organization/projects"
SPEND_LIMIT_PATH = "/organization/spend_limit"
USAGE_PATH = "/organization/usage"
#: Hourly buckets per usage page (the API allows 168): a page is parsed whole, and six hours of a 2,000-project
#: organization are ~10k results (3 MB of JSON, ~10 MB decoded); a week in one page would be a million.
USAGE_HOURS_LIMIT = 6
MAX_COSTS_LIMIT = 180  # buckets per page (§1.1)
PROJECTS_LIMIT = 100  # the maximum; the default 20 loses projects (§7.9)
MAX_PAGES = 1024  # runaway-pagination cap, as Costroid uses (§1.3)
Query = list[tuple[str, str | int | float | bool | None]]  # what httpx accepts as params
#: The largest decoded body read from the API: a costs page of 2,000 projects is a few MB (see paging.COSTS_PAGE_DAYS).
MAX_REPLY_BYTES = 64 * 1024 * 1024
#: What is kept of an error reply's body: its message is quoted to 300 characters (responses.MAX_MESSAGE).
MAX_ERROR_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one request is tried before `APIUnavailable` is raised."""

    attempts: int = 4  # total tries per request
    timeout: float = 60.0  # total seconds for one request, retries included
    wait_initial: float = 1.0
    wait_max: float = 30.0


def build_http_client(
    base_url: str,
    admin_key: str,
    *,
    timeout: float = defaults.REQUEST_TIMEOUT_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An `httpx.Client` for the Admin API at `base_url` (e.g. `https://api.openai.com/v1`)."""
    return httpx.Client(
        base_url=base_url.rstrip("/") + "/",
        headers={
            "Authorization": f"Bearer {admin_key}",
            "User-Agent": f"openai-cost-exporter/{__version__}",
            "Accept-Encoding": ACCEPT_ENCODING,
        },
        timeout=timeout,
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        transport=transport,
    )


class AdminClient:
    """Reads costs and projects of one organization, paging, retrying and validating as it goes."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        on_request: Callable[[str, str], None] | None = None,
        retry: RetryPolicy = RetryPolicy(),
        deadline: float | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._on_request = on_request  # (endpoint, status) of every request: the self-metrics' hook
        self._retry = retry
        # Seconds one attempt may take from sending to the last byte: by default the read timeout (--request-timeout)
        self._deadline = deadline if deadline is not None else reply_deadline(http)
        self._max_reply_bytes = max_reply_bytes
        self._clock = clock  # monotonic seconds, injectable so tests need not wait for a deadline
        # Known only to mask it: a server may echo the key in an error message.
        self._secret = http.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    def __repr__(self) -> str:
        return f"AdminClient(base_url={str(self._http.base_url)!r}, retry={self._retry!r})"

    def page_days(self, *, line_items: bool, api_keys: bool = False) -> int:
        """Days per costs page (`costs_page_days`)."""
        return costs_page_days(line_items, api_keys)

    def iter_costs(
        self,
        start: dt.date,
        end: dt.date,
        *,
        line_items: bool = False,
        limit: int = MAX_COSTS_LIMIT,
        project_ids: Sequence[str] = (),
        api_keys: bool = False,
    ) -> Iterator[CostPage]:
        """Daily costs of the UTC days [start, end), one `CostPage` per API page, grouped by project.

        With `api_keys`, grouped by API key too, for the days the API allows it (from API_KEYS_EPOCH on; a window
        it refuses comes by project only, said once). Arguments are checked at the call; requests start when the
        iterator is first advanced.
        """
        if not 1 <= limit <= MAX_COSTS_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_COSTS_LIMIT}, not {limit}")
        if end <= start:
            raise ValueError(f"end ({end}) must be after start ({start})")
        if api_keys:
            return self._cost_pages_by_key(start, end, line_items, limit, project_ids)
        return self._cost_pages(start, end, line_items, limit, project_ids, api_keys=False)

    def _cost_pages_by_key(
        self, start: dt.date, end: dt.date, line_items: bool, limit: int, project_ids: Sequence[str]
    ) -> Iterator[CostPage]:
        """Pages by key where the API has them, by project before its key epoch or where it refuses the key."""
        if start < API_KEYS_EPOCH:
            split = min(end, API_KEYS_EPOCH)
            log.info(
                "costs by API key begin on %s (OpenAI refuses the grouping before); %s to %s come by project only",
                API_KEYS_EPOCH,
                start,
                split - dt.timedelta(days=1),
            )
            yield from self._cost_pages(start, split, line_items, limit, project_ids, api_keys=False)
            if split >= end:
                return
            start = split
        try:
            yield from self._cost_pages(start, end, line_items, limit, project_ids, api_keys=True)
        except GroupingRefused as exc:
            # Never widened: the same window again, by project only (its days keep no key figures).
            log.warning("%s; %s to %s come by project only", exc, start, end - dt.timedelta(days=1))
            yield from self._cost_pages(start, end, line_items, limit, project_ids, api_keys=False)

    def _cost_pages(
        self,
        start: dt.date,
        end: dt.date,
        line_items: bool,
        limit: int,
        project_ids: Sequence[str],
        *,
        api_keys: bool,
    ) -> Iterator[CostPage]:
        group_by = ["project_id", "line_item"] if line_items else ["project_id"]
        if api_keys:
            group_by.append("api_key_id")
        # Midnight UTC on both ends, so that each bucket is one UTC calendar day (§4 "Timezone").
        query: Query = [
            ("start_time", day_start(start)),
            ("end_time", day_start(end)),
            ("bucket_width", "1d"),
        ]
        query += [("group_by", group) for group in group_by]  # repeated keys (§1.1)
        query += [("project_ids", project_id) for project_id in project_ids]  # only these projects
        query.append(("limit", limit))
        for n, body in self._pages("costs", COSTS_PATH, query, "page", next_page_cursor):
            page = parse_cost_page(body, f"GET {COSTS_PATH} page {n}", line_items=line_items, api_keys=api_keys)
            del body  # not held while the next page is fetched: one decoded page at a time
            yield page

    def iter_usage(
        self,
        kind: str,
        start: int,
        end: int,
        *,
        limit: int = USAGE_HOURS_LIMIT,
        api_keys: bool = False,
        project_ids: Sequence[str] = (),
        width: str = "1h",
    ) -> Iterator[UsagePage]:
        """Token usage of `/organization/usage/{kind}` in [start, end) (Unix seconds) in buckets of `width` (1h or
        1m), by project and model (and API key with `api_keys`; only `project_ids` when given).

        Usage is seen within minutes (openai-admin-api.md §3, §9): what estimates and the runaway rule read.
        """
        path = f"{USAGE_PATH}/{kind}"
        query: Query = [*usage_query(start, end, width, limit, api_keys=api_keys, project_ids=project_ids)]
        for n, body in self._pages(f"usage_{kind}", path, query, "page", next_page_cursor):
            page = parse_usage_page(body, f"GET {path} page {n}", kind=kind, api_keys=api_keys)
            del body  # as in _cost_pages
            yield page

    def list_projects(self) -> list[Project]:
        """Every project of the organization, archived ones included (§2, §7.9)."""
        query: Query = [("limit", PROJECTS_LIMIT), ("include_archived", "true")]
        projects: dict[str, Project] = {}
        for page_no, body in self._pages("projects", PROJECTS_PATH, query, "after", next_after_cursor):
            for project in parse_projects(body, f"GET {PROJECTS_PATH} page {page_no}"):
                projects[project.id] = project
        return list(projects.values())

    def list_api_keys(self, project_id: str) -> list[ApiKey]:
        """Every API key of one project, with its name and owner (§9)."""
        path = f"{PROJECTS_PATH}/{quote(project_id, safe='')}/api_keys"
        # `any`: every enabled key; without it the API hides the keys of owners who left the project (§9 spec).
        query: Query = [("limit", PROJECTS_LIMIT), ("owner_project_access", "any")]
        keys: dict[str, ApiKey] = {}
        for page_no, body in self._pages("api_keys", path, query, "after", next_after_cursor):
            for key in parse_api_keys(body, f"GET {path} page {page_no}"):
                keys[key.id] = key
        return list(keys.values())

    def spend_limit(self, project_id: str | None) -> SpendLimit | None:
        """The hard spend limit of the organization (None) or of one project; None when it has none (§9)."""
        path = SPEND_LIMIT_PATH if project_id is None else f"{PROJECTS_PATH}/{quote(project_id, safe='')}/spend_limit"
        body = self._get("spend_limit", path, [], absent_ok=True)
        return parse_spend_limit(body, f"GET {path}")

    def _pages(
        self, endpoint: str, path: str, query: Query, cursor_param: str, next_cursor: Callable[[Json], str]
    ) -> Iterator[tuple[int, Json]]:
        """Bodies of every page, following the cursor with the guards of §1.3."""
        seen: set[str] = set()
        cursor = ""
        for page_no in range(1, MAX_PAGES + 1):
            page_query = [*query, (cursor_param, cursor)] if cursor else query
            body = self._get(endpoint, path, page_query)
            yield page_no, body
            if not has_more_pages(body, f"GET {path} page {page_no}"):
                return
            cursor = next_cursor(body)
            del body  # the caller has read it: freed before the next request, not after
            if not cursor:
                log.warning("GET %s page %d: has_more is true but no cursor was sent; stopping", path, page_no)
                return
            if cursor in seen:
                raise MalformedResponse(f"GET {path} page {page_no}: cursor {cursor!r} was already followed")
            seen.add(cursor)
        raise MalformedResponse(f"GET {path}: still has_more after {MAX_PAGES} pages; giving up")

    def _get(self, endpoint: str, path: str, query: Query, *, absent_ok: bool = False) -> Json:
        """The JSON object of one request, tried as the retry policy allows; `{}` for a 404 if `absent_ok`."""
        attempts = 0
        body: Json = {}
        failed: tuple[float, Transient] | None = None  # when the last attempt failed, and why
        try:
            for attempt in stamina.retry_context(
                on=self._backoff,
                attempts=self._retry.attempts,
                timeout=self._retry.timeout,
                wait_initial=self._retry.wait_initial,
                wait_max=self._retry.wait_max,
            ):
                with attempt:
                    attempts = attempt.num
                    if failed is not None:
                        _log_retry(path, attempts, time.monotonic() - failed[0], failed[1])
                    try:
                        body = self._attempt(endpoint, path, query, absent_ok)
                    except Transient as exc:
                        failed = (time.monotonic(), exc)
                        raise
        except Transient as exc:
            error = MalformedResponse if exc.malformed else APIUnavailable
            raise error(f"GET {path} failed after {attempts} attempts: {exc}{exc.hint}") from exc
        return body

    def _backoff(self, exc: Exception) -> bool | float:
        """stamina hook: retry transient failures; wait what `Retry-After` asks if it fits the budget."""
        if not isinstance(exc, Transient):
            return False
        if exc.retry_after is None:
            return True
        return exc.retry_after if exc.retry_after <= self._retry.timeout else False

    def _attempt(self, endpoint: str, path: str, query: Query, absent_ok: bool = False) -> Json:
        """One request; raises `Transient` for what is worth another try."""
        deadline = self._clock() + self._deadline
        try:
            with self._http.stream("GET", path, params=query) as streamed:
                response = self._read(endpoint, path, streamed, deadline)
        except ReplyTooSlow:
            self._count(endpoint, "timeout")
            raise Transient(f"timeout (no complete reply within {self._deadline:g} s)") from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            kind = failure_kind(exc)
            self._count(endpoint, kind)
            # `from None`: the message already carries the cause, masked; the original text is not.
            raise Transient(redact(f"{kind} ({type(exc).__name__}: {exc})", self._secret)) from None
        except httpx.RequestError as exc:
            self._count(endpoint, "request_error")
            raise OpenAIError(redact(f"GET {path} failed: {type(exc).__name__}: {exc}", self._secret)) from None
        if response.is_success:
            return self._json(endpoint, path, response)
        self._count(endpoint, str(response.status_code))
        if absent_ok and response.status_code == httpx.codes.NOT_FOUND:
            return {}
        raise status_error(path, response, self._secret)

    def _read(self, endpoint: str, path: str, streamed: httpx.Response, deadline: float) -> httpx.Response:
        """The streamed reply read whole (within the deadline and the size limit), as a plain response."""
        limit = self._max_reply_bytes if streamed.is_success else min(self._max_reply_bytes, MAX_ERROR_BYTES)
        try:
            content = read_reply(streamed, limit=limit, deadline=deadline, clock=self._clock)
        except ReplyTooLarge as exc:
            if streamed.is_success:
                self._count(endpoint, "too_large")
                raise MalformedResponse(f"GET {path}: {exc}; not read any further") from None
            content = exc.head  # enough of an error page to quote; its status decides what happens
        # Decoded already: the headers that describe the wire form would make httpx decode it again.
        headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        return httpx.Response(streamed.status_code, headers=headers, content=content, request=streamed.request)

    def _json(self, endpoint: str, path: str, response: httpx.Response) -> Json:
        try:
            body = decode_json(response.content)
        except ValueError as exc:  # truncated or not JSON at all: a proxy page, a cut connection
            self._count(endpoint, "invalid_json")
            raise Transient(f"HTTP {response.status_code} with invalid JSON ({exc})", malformed=True) from exc
        self._count(endpoint, str(response.status_code))
        if not isinstance(body, dict):
            raise MalformedResponse(f"GET {path}: the body is a {type(body).__name__}, not an object")
        return body

    def _count(self, endpoint: str, status: str) -> None:
        if self._on_request is not None:
            self._on_request(endpoint, status)


_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _log_retry(path: str, attempt: int, waited: float, cause: Transient) -> None:
    """One line per retry, as it starts: its text is free of secrets (`Transient`), the query is left out."""
    log.warning(
        "GET %s: attempt %d after %.1f s wait (attempt %d failed: %s)", path, attempt, waited, attempt - 1, cause
    )
