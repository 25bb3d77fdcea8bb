"""Push to VictoriaMetrics (or vmagent, or a cluster's insert URL) in the Prometheus text format.

The URL is the full import URL, e.g. `http://localhost:8428/api/v1/import/prometheus`. The `job` label and any
extra labels travel as `extra_label=name=value` query arguments, which every VictoriaMetrics import endpoint takes.
A push, from sending to the reply's last byte, has a wall-clock deadline (the client's read timeout); the reply's
body is read to 1 MiB at most (`openai_client.read_reply`): a target that trickles or floods cannot hold a cycle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from openai_cost_exporter.errors import PushError
from openai_cost_exporter.replies import ACCEPT_ENCODING, ReplyTooLarge, ReplyTooSlow, read_reply, reply_deadline

log = logging.getLogger(__name__)

#: What is read of a push reply: VictoriaMetrics answers 204, or an error of a few lines.
MAX_REPLY_BYTES = 1024 * 1024


def safe_url(url: str) -> str:
    """The URL without user-info or query, fit for a log line (basic-auth passwords stay out of logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal: hostname drops the brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a non-numeric port: keep it out rather than fail while reporting another error
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


class Pusher:
    """Sends a registry's samples to one import URL."""

    def __init__(
        self,
        http: httpx.Client,
        url: str,
        labels: Mapping[str, str],
        *,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._deadline = deadline if deadline is not None else reply_deadline(http)  # seconds per push
        self._clock = clock  # monotonic seconds, injectable so tests need not wait for a deadline
        parts = urlsplit(url)
        # httpx replaces a URL's whole query when `params` is given, so the URL's own arguments (say an
        # `extra_label` or a tenant) are carried over explicitly, before ours.
        self._url = urlunsplit(parts._replace(query=""))
        self._params: list[tuple[str, str | int | float | bool | None]] = [
            *parse_qsl(parts.query, keep_blank_values=True),
            *(("extra_label", f"{name}={value}") for name, value in sorted(labels.items())),
        ]

    def __repr__(self) -> str:
        return f"Pusher({safe_url(self._url)!r})"

    def push(self, registry: CollectorRegistry) -> int:
        """Push every sample of `registry`; return the number of bytes sent. Raises PushError."""
        body = generate_latest(registry)
        status, reply = self._post(body)
        if not httpx.codes.is_success(status):  # 2xx: VictoriaMetrics answers 204
            detail = _one_line(reply.decode("utf-8", "replace"))
            raise PushError(f"push to {safe_url(self._url)} failed: HTTP {status}: {detail}")
        log.debug("pushed %d bytes to %s", len(body), safe_url(self._url))
        return len(body)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        """The status and (the head of) the body of the reply to one POST, complete within the deadline."""
        deadline = self._clock() + self._deadline
        headers = {"Content-Type": "text/plain", "Accept-Encoding": ACCEPT_ENCODING}
        try:
            with self._http.stream("POST", self._url, content=body, params=self._params, headers=headers) as reply:
                return reply.status_code, self._read(reply, deadline)
        except ReplyTooSlow:
            reason = f"no complete reply within {self._deadline:g} s"
            raise PushError(f"push to {safe_url(self._url)} failed: {reason}") from None
        except httpx.HTTPError as exc:
            detail = _one_line(str(exc))
            raise PushError(f"push to {safe_url(self._url)} failed: {type(exc).__name__}: {detail}") from None

    def _read(self, reply: httpx.Response, deadline: float) -> bytes:
        try:
            return read_reply(reply, limit=MAX_REPLY_BYTES, deadline=deadline, clock=self._clock)
        except ReplyTooLarge as exc:  # the status is the answer; the head is enough to quote
            return exc.head
