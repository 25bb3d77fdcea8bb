"""Push to VictoriaMetrics (or vmagent, or a cluster's insert URL) in the Prometheus text format.

The URL is the full import URL, e.g. `http://localhost:8428/api/v1/import/prometheus`. The `job` label and any
extra labels travel as `extra_label=name=value` query arguments, which every VictoriaMetrics import endpoint takes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from openai_cost_exporter.errors import PushError

log = logging.getLogger(__name__)


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

    def __init__(self, http: httpx.Client, url: str, labels: Mapping[str, str]) -> None:
        self._http = http
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
        try:
            response = self._http.post(
                self._url, content=body, params=self._params, headers={"Content-Type": "text/plain"}
            )
        except httpx.HTTPError as exc:
            detail = _one_line(str(exc))
            raise PushError(f"push to {safe_url(self._url)} failed: {type(exc).__name__}: {detail}") from None
        if not response.is_success:  # 2xx: VictoriaMetrics answers 204
            detail = _one_line(response.text)
            raise PushError(f"push to {safe_url(self._url)} failed: HTTP {response.status_code}: {detail}")
        log.debug("pushed %d bytes to %s", len(body), safe_url(self._url))
        return len(body)
