"""Client of the OpenAI Admin API: `GET /organization/costs` and `GET /organization/projects`.

Owns the requests: paging, retries and the mapping of HTTP failures to `errors.py`; reading the bodies is
`openai_responses.py`'s job. Every quirk it guards against is listed in openai-admin-api.md §7. Retries go
through stamina (one `retry_context` per request); the client raises only errors from `errors.py`, with the
admin key masked.
Thread-safe: it keeps no state between calls, so two threads may share one client and one `httpx.Client`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import httpx
import stamina

from openai_cost_exporter import __version__, defaults
from openai_cost_exporter.errors import APIUnavailable, AuthError, MalformedResponse, OpenAIError, ScopeError
from openai_cost_exporter.models import CostPage, Project, day_start
from openai_cost_exporter.openai_responses import (
    Json,
    has_more_pages,
    next_after_cursor,
    next_page_cursor,
    parse_cost_page,
    parse_projects,
    retry_after_seconds,
    server_message,
)
from openai_cost_exporter.redact import redact
from openai_cost_exporter.usage_responses import UsagePage, parse_usage_page

log = logging.getLogger(__name__)

COSTS_PATH = "/organization/costs"
PROJECTS_PATH = "/organization/projects"
USAGE_PATH = "/organization/usage"
#: Hourly buckets per usage page: a day (the API allows 168); a page is parsed whole, and a week of a 2,000-project
#: organization in one page would be a million results.
USAGE_HOURS_LIMIT = 24
MAX_COSTS_LIMIT = 180  # buckets per page (§1.1)
PROJECTS_LIMIT = 100  # the maximum; the default 20 loses projects (§7.9)
MAX_PAGES = 1024  # runaway-pagination cap, as Costroid uses (§1.3)
Query = list[tuple[str, str | int | float | bool | None]]  # what httpx accepts as params


#: Daily buckets asked per costs page. The API allows 180, but a page is parsed whole: a week keeps a 2,000-project
#: organization at ~14k rows a page; grouped by line item (~3x the rows) two days keep it near that.
COSTS_PAGE_DAYS = 7
COSTS_PAGE_DAYS_WITH_LINE_ITEMS = 2


def costs_page_days(line_items: bool) -> int:
    """Days per costs page: fewer when each day has a row per line item."""
    return COSTS_PAGE_DAYS_WITH_LINE_ITEMS if line_items else COSTS_PAGE_DAYS


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one request is tried before `APIUnavailable` is raised."""

    attempts: int = 4  # total tries per request
    timeout: float = 60.0  # total seconds for one request, retries included
    wait_initial: float = 1.0
    wait_max: float = 30.0


class _Transient(Exception):
    """A failed attempt worth repeating; its text is already free of secrets."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, malformed: bool = False, hint: str = ""
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.malformed = malformed  # the body was not JSON: MalformedResponse once retries run out
        self.hint = hint  # added to the error once retries run out


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
        headers={"Authorization": f"Bearer {admin_key}", "User-Agent": f"openai-cost-exporter/{__version__}"},
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
    ) -> None:
        self._http = http
        self._on_request = on_request  # (endpoint, status) of every request: the self-metrics' hook
        self._retry = retry
        # Known only to mask it: a server may echo the key in an error message.
        self._secret = http.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    def __repr__(self) -> str:
        return f"AdminClient(base_url={str(self._http.base_url)!r}, retry={self._retry!r})"

    def iter_costs(
        self,
        start: dt.date,
        end: dt.date,
        *,
        line_items: bool = False,
        limit: int = MAX_COSTS_LIMIT,
        project_ids: Sequence[str] = (),
    ) -> Iterator[CostPage]:
        """Daily costs of the UTC days [start, end), one `CostPage` per API page, grouped by project.

        Arguments are checked at the call; requests start when the iterator is first advanced.
        """
        if not 1 <= limit <= MAX_COSTS_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_COSTS_LIMIT}, not {limit}")
        if end <= start:
            raise ValueError(f"end ({end}) must be after start ({start})")
        group_by = ["project_id", "line_item"] if line_items else ["project_id"]
        # Midnight UTC on both ends, so that each bucket is one UTC calendar day (§4 "Timezone").
        query: Query = [
            ("start_time", day_start(start)),
            ("end_time", day_start(end)),
            ("bucket_width", "1d"),
        ]
        query += [("group_by", group) for group in group_by]  # repeated keys (§1.1)
        query += [("project_ids", project_id) for project_id in project_ids]  # only these projects
        query.append(("limit", limit))
        pages = self._pages("costs", COSTS_PATH, query, "page", next_page_cursor)
        return (parse_cost_page(body, f"GET {COSTS_PATH} page {n}", line_items=line_items) for n, body in pages)

    def iter_usage(self, kind: str, start: int, end: int, *, limit: int = USAGE_HOURS_LIMIT) -> Iterator[UsagePage]:
        """Hourly token usage of `/organization/usage/{kind}` in [start, end) (Unix seconds), by project and model.

        Usage is seen within minutes (openai-admin-api.md §3, §9): what estimates and the runaway rule read.
        """
        path = f"{USAGE_PATH}/{kind}"
        query: Query = [("start_time", start), ("end_time", end), ("bucket_width", "1h")]
        query += [("group_by", "project_id"), ("group_by", "model"), ("limit", limit)]
        pages = self._pages(f"usage_{kind}", path, query, "page", next_page_cursor)
        return (parse_usage_page(body, f"GET {path} page {n}", kind=kind) for n, body in pages)

    def list_projects(self) -> list[Project]:
        """Every project of the organization, archived ones included (§2, §7.9)."""
        query: Query = [("limit", PROJECTS_LIMIT), ("include_archived", "true")]
        projects: dict[str, Project] = {}
        for page_no, body in self._pages("projects", PROJECTS_PATH, query, "after", next_after_cursor):
            for project in parse_projects(body, f"GET {PROJECTS_PATH} page {page_no}"):
                projects[project.id] = project
        return list(projects.values())

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
            if not cursor:
                log.warning("GET %s page %d: has_more is true but no cursor was sent; stopping", path, page_no)
                return
            if cursor in seen:
                raise MalformedResponse(f"GET {path} page {page_no}: cursor {cursor!r} was already followed")
            seen.add(cursor)
        raise MalformedResponse(f"GET {path}: still has_more after {MAX_PAGES} pages; giving up")

    def _get(self, endpoint: str, path: str, query: Query) -> Json:
        """The JSON object of one request, tried as the retry policy allows."""
        attempts = 0
        body: Json = {}
        failed: tuple[float, _Transient] | None = None  # when the last attempt failed, and why
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
                        body = self._attempt(endpoint, path, query)
                    except _Transient as exc:
                        failed = (time.monotonic(), exc)
                        raise
        except _Transient as exc:
            error = MalformedResponse if exc.malformed else APIUnavailable
            raise error(f"GET {path} failed after {attempts} attempts: {exc}{exc.hint}") from exc
        return body

    def _backoff(self, exc: Exception) -> bool | float:
        """stamina hook: retry transient failures; wait what `Retry-After` asks if it fits the budget."""
        if not isinstance(exc, _Transient):
            return False
        if exc.retry_after is None:
            return True
        return exc.retry_after if exc.retry_after <= self._retry.timeout else False

    def _attempt(self, endpoint: str, path: str, query: Query) -> Json:
        """One request; raises `_Transient` for what is worth another try."""
        try:
            response = self._http.get(path, params=query)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            kind = _failure_kind(exc)
            self._count(endpoint, kind)
            # `from None`: the message already carries the cause, masked; the original text is not.
            raise _Transient(redact(f"{kind} ({type(exc).__name__}: {exc})", self._secret)) from None
        except httpx.RequestError as exc:
            self._count(endpoint, "request_error")
            raise OpenAIError(redact(f"GET {path} failed: {type(exc).__name__}: {exc}", self._secret)) from None
        if response.is_success:
            return self._json(endpoint, path, response)
        self._count(endpoint, str(response.status_code))
        raise self._status_error(path, response)

    def _json(self, endpoint: str, path: str, response: httpx.Response) -> Json:
        try:
            body = response.json()
        except ValueError as exc:  # truncated or not JSON at all: a proxy page, a cut connection
            self._count(endpoint, "invalid_json")
            raise _Transient(f"HTTP {response.status_code} with invalid JSON ({exc})", malformed=True) from exc
        self._count(endpoint, str(response.status_code))
        if not isinstance(body, dict):
            raise MalformedResponse(f"GET {path}: the body is a {type(body).__name__}, not an object")
        return body

    def _status_error(self, path: str, response: httpx.Response) -> Exception:
        status = response.status_code
        message = redact(server_message(response), self._secret)
        if status == httpx.codes.UNAUTHORIZED:
            return AuthError(
                f"OpenAI rejected the admin key (HTTP 401: {message}); "
                "check that the configured key is a valid, unrevoked admin key (sk-admin-...)"
            )
        if status == httpx.codes.FORBIDDEN:
            return ScopeError(
                f"The admin key lacks permission for GET {path} (HTTP 403: {message}); it likely misses "
                "the api.usage.read scope. An organization admin key (sk-admin-...) is required; "
                "project keys (sk-proj-...) never work here"
            )
        if status == httpx.codes.TOO_MANY_REQUESTS:
            wait = retry_after_seconds(response)
            hint = "" if wait is None else f" (Retry-After {wait:g} s)"
            return _Transient(f"HTTP 429: {message}{hint}", retry_after=wait)
        if status == httpx.codes.NOT_FOUND:  # retried: /organization/costs had a 404 outage (§4, §7.10)
            return _Transient(f"HTTP 404: {message}", hint=self._not_found_hint(response))
        if status >= httpx.codes.INTERNAL_SERVER_ERROR or status == httpx.codes.REQUEST_TIMEOUT:
            return _Transient(f"HTTP {status}: {message}")
        return OpenAIError(f"GET {path} was rejected (HTTP {status}: {message})")

    def _not_found_hint(self, response: httpx.Response) -> str:
        """Where the request went: a persistent 404 is more often a base URL without `/v1` than an outage."""
        url = response.request.url  # without query and user info: neither helps, either may hold a secret
        asked = redact(f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}", self._secret)
        return f" from {asked} (is --base-url right? it usually ends in /v1, e.g. {defaults.DEFAULT_BASE_URL})"

    def _count(self, endpoint: str, status: str) -> None:
        if self._on_request is not None:
            self._on_request(endpoint, status)


def _log_retry(path: str, attempt: int, waited: float, cause: _Transient) -> None:
    """One line per retry, as it starts: its text is free of secrets (`_Transient`), the query is left out."""
    log.warning(
        "GET %s: attempt %d after %.1f s wait (attempt %d failed: %s)", path, attempt, waited, attempt - 1, cause
    )


def _failure_kind(exc: httpx.HTTPError) -> str:
    """The `status` label of a request that got no HTTP status."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, httpx.DecodingError):
        return "decoding_error"
    return "transport_error"
