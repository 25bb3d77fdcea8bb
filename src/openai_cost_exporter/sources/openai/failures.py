"""What a failed Admin API request means: worth another try (`Transient`), or an error from errors.py.

The client (sources/openai/client.py) owns the requests and retries; this maps their failures, with the admin key masked
in every message (a server may echo it).
"""

from __future__ import annotations

import httpx

from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.errors import AuthError, GroupingRefused, OpenAIError, ScopeError
from openai_cost_exporter.core.models import API_KEYS_EPOCH, day_start
from openai_cost_exporter.core.redact import redact
from openai_cost_exporter.sources.openai.responses import retry_after_seconds, server_message

#: The key epoch as the API's refusal names it (openai-admin-api.md §9).
API_KEYS_EPOCH_SECONDS = day_start(API_KEYS_EPOCH)


class Transient(Exception):
    """A failed attempt worth repeating; its text is already free of secrets."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, malformed: bool = False, hint: str = ""
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.malformed = malformed  # the body was not JSON: MalformedResponse once retries run out
        self.hint = hint  # added to the error once retries run out


def status_error(path: str, response: httpx.Response, secret: str) -> Exception:
    """The error of a reply that is not a success: what to raise, or a Transient worth another try."""
    status = response.status_code
    message = redact(server_message(response), secret)
    if status == httpx.codes.UNAUTHORIZED:
        return AuthError(
            f"OpenAI rejected the admin key (HTTP 401: {message}); "
            "check that the configured key is a valid, unrevoked admin key (sk-admin-...)"
        )
    if status == httpx.codes.FORBIDDEN:
        return ScopeError(f"The admin key lacks permission for GET {path} (HTTP 403: {message}); {_scope_hint(path)}")
    if status == httpx.codes.TOO_MANY_REQUESTS:
        wait = retry_after_seconds(response)
        hint = "" if wait is None else f" (Retry-After {wait:g} s)"
        return Transient(f"HTTP 429: {message}{hint}", retry_after=wait)
    if status == httpx.codes.NOT_FOUND:  # retried: /organization/costs had a 404 outage (§4, §7.10)
        return Transient(f"HTTP 404: {message}", hint=_not_found_hint(response, secret))
    if status >= httpx.codes.INTERNAL_SERVER_ERROR or status == httpx.codes.REQUEST_TIMEOUT:
        return Transient(f"HTTP {status}: {message}")
    # A 400 naming the key: costs by api_key_id are refused for windows before the key epoch (§9).
    names_key = "api_key_id" in message or str(API_KEYS_EPOCH_SECONDS) in message
    refused = GroupingRefused if status == httpx.codes.BAD_REQUEST and names_key else OpenAIError
    return refused(f"GET {path} was rejected (HTTP {status}: {message})")


def _scope_hint(path: str) -> str:
    """What a 403 most likely means for this endpoint."""
    if path.endswith(("/api_keys", "/spend_limit")):  # listed per project (directory.py): the rest goes on
        return "a restricted admin key needs read access to the projects' API keys and limits for this"
    return (
        "it likely misses the api.usage.read scope. An organization admin key (sk-admin-...) is required; "
        "project keys (sk-proj-...) never work here"
    )


def _not_found_hint(response: httpx.Response, secret: str) -> str:
    """Where the request went: a persistent 404 is more often a base URL without `/v1` than an outage."""
    url = response.request.url  # without query and user info: neither helps, either may hold a secret
    asked = redact(f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}", secret)
    return f" from {asked} (is --base-url right? it usually ends in /v1, e.g. {defaults.DEFAULT_BASE_URL})"


def failure_kind(exc: httpx.HTTPError) -> str:
    """The `status` label of a request that got no HTTP status."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, httpx.DecodingError):
        return "decoding_error"
    return "transport_error"
