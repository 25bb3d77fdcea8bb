"""Push to VictoriaMetrics (or vmagent, or a cluster's insert URL) in the Prometheus text format.

The URL is the full import URL, e.g. `http://localhost:8428/api/v1/import/prometheus`. The `job` label and any
extra labels travel as `extra_label=name=value` query arguments, which every VictoriaMetrics import endpoint takes.
A push, from sending to the reply's last byte, has a wall-clock deadline (the client's read timeout); the reply's
body is read to 1 MiB at most (`core.replies.read_reply`): a target that trickles or floods cannot hold a cycle.

The live figures go through prometheus-client. Timestamped history is written by `series_prefix`, `sample_value`
and `sample_stamp` into the same text, byte for byte, and pushed as a `TextRegistry`: prometheus-client spends
~10 µs a sample on it, a direct write ~1 µs. It stays the text format, although VictoriaMetrics also imports JSON
lines and CSV: on a 180-day backfill (bench/backfill.py) VictoriaMetrics 1.79 spent the same CPU on each (~10 µs
a sample, most of it its per-day index), and the text is what every URL a user may configure takes (vmagent, a
cluster, a proxy); the native format is only VictoriaMetrics' own export.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from openai_cost_exporter.core.errors import PushError
from openai_cost_exporter.core.replies import ACCEPT_ENCODING, ReplyTooLarge, ReplyTooSlow, read_reply, reply_deadline

log = logging.getLogger(__name__)

#: From here up, Go (and so prometheus-client) writes a float with an exponent: 1e+06, not 1000000.0.
_GO_EXPONENTS_FROM = 1e6
_go_float: Callable[[float], str] = floatToGoString  # typed here: prometheus-client's utils carry no annotations

#: What is read of a push reply: VictoriaMetrics answers 204, or an error of a few lines.
MAX_REPLY_BYTES = 1024 * 1024


def push_target(url: str) -> str:
    """A push target's identity, as the state file keeps it: a hash of its URL without credentials or query (the
    storage it writes to), so a new VictoriaMetrics is a new target that still needs every day."""
    return hashlib.sha256(safe_url(url).encode()).hexdigest()[:16]


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


def label_value(text: str) -> str:
    """`text` escaped for a label value of the text format, as prometheus-client escapes it."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def series_prefix(name: str, labels: Mapping[str, str]) -> str:
    """The start of a sample line up to its value: `name{label="value",...} `, labels sorted by name."""
    pairs = ",".join(f'{key}="{label_value(labels[key])}"' for key in sorted(labels))
    return f"{name}{{{pairs}}} "


def sample_value(value: float) -> str:
    """A sample value as prometheus-client writes it (Go's format: `1e+06` and up, NaN, +Inf, as exponents)."""
    # repr is what floatToGoString returns below a million; checked this way, the common case costs one compare.
    return repr(value) if -math.inf < value < _GO_EXPONENTS_FROM else _go_float(value)


def sample_stamp(seconds: float) -> str:
    """A timestamp's end of a sample line: ` <milliseconds>` and the newline, as prometheus-client writes it."""
    return f" {int(float(seconds) * 1000):d}\n"


class TextRegistry(CollectorRegistry):
    """Samples written in the text format already (`HistoryCollector.text`): `Pusher.push` sends the text as it
    is; whatever else reads the registry (a stand-in push target, say) collects the families parsed back from it."""

    def __init__(self, text: bytes) -> None:
        super().__init__(auto_describe=False)
        self.text = text

    def collect(self) -> Iterable[Metric]:
        return text_string_to_metric_families(self.text.decode("utf-8"))


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
        self.target = push_target(url)  # what the ledger remembers pushes by (store/ledger.py `pushed_days`)
        self._params: list[tuple[str, str | int | float | bool | None]] = [
            *parse_qsl(parts.query, keep_blank_values=True),
            *(("extra_label", f"{name}={value}") for name, value in sorted(labels.items())),
        ]

    def __repr__(self) -> str:
        return f"Pusher({safe_url(self._url)!r})"

    def push(self, registry: CollectorRegistry) -> int:
        """Push every sample of `registry` (a TextRegistry's text as it is); return the bytes sent. Raises PushError."""
        body = registry.text if isinstance(registry, TextRegistry) else generate_latest(registry)
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
