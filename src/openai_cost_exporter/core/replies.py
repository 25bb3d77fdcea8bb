"""Reading a reply whole, bounded: a wall-clock deadline and a cap on the decoded size (issue 11).

Used by the Admin API client and the push. A socket timeout bounds each read, not the reply, so a body trickled a
few bytes at a time never times out; and a small gzip body can inflate to gigabytes.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

import httpx

from openai_cost_exporter.core import defaults

#: The one encoding asked for and decoded: `read_reply` bounds what zlib inflates, call by call.
ACCEPT_ENCODING = "gzip"


class ReplyTooSlow(Exception):
    """The reply was not complete by its deadline (a body trickled, or headers that came late)."""


class ReplyTooLarge(Exception):
    """The reply's body, decoded, is larger than allowed; `head` is its first `limit` bytes."""

    def __init__(self, limit: int, body: bytes | bytearray) -> None:
        shown = f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit} bytes"
        super().__init__(f"the reply is larger than {shown}")
        self._limit, self._body = limit, body

    @property
    def head(self) -> bytes:
        return bytes(self._body[: self._limit])  # copied only when asked: a 64 MiB copy of a bomb is no help


def read_reply(
    response: httpx.Response, *, limit: int, deadline: float, clock: Callable[[], float] = time.monotonic
) -> bytes:
    """The decoded body of a streamed `response`, complete before `deadline` (a `clock()` value), at most `limit`
    bytes. Raises ReplyTooSlow, ReplyTooLarge, or httpx errors (`DecodingError` for a broken gzip body).

    It reads raw chunks and inflates them itself (not `iter_bytes`): httpx inflates a whole network read at once
    (64 KiB of gzip can be 64 MB), and a gzip header trickled forever decodes to no bytes at all, so a check
    between decoded chunks would never run.
    """
    _check_deadline(deadline, clock)  # the headers may have come late already
    if response.is_stream_consumed:  # read whole already (a transport's in-memory reply), and decoded by httpx
        if len(response.content) > limit:
            raise ReplyTooLarge(limit, response.content)
        return response.content
    inflate = _decompressor(response)
    body = bytearray()
    raw_bytes = 0
    for raw in response.iter_raw():
        raw_bytes += len(raw)
        _decode_into(body, raw, inflate, limit, response.request)
        if len(body) > limit or raw_bytes > limit:
            raise ReplyTooLarge(limit, body)
        _check_deadline(deadline, clock)
    return bytes(body)


def _decode_into(
    body: bytearray, raw: bytes, inflate: zlib._Decompress | None, limit: int, request: httpx.Request
) -> None:
    """Append `raw`, decoded, to `body`, stopping one byte past `limit`."""
    if inflate is None:
        body += raw[: limit + 1 - len(body)]
        return
    data = raw
    while data and len(body) <= limit:
        try:
            body += inflate.decompress(data, limit + 1 - len(body))  # at most one byte past the limit
        except zlib.error as exc:
            raise httpx.DecodingError(f"broken gzip body: {exc}", request=request) from None
        data = inflate.unconsumed_tail


def _check_deadline(deadline: float, clock: Callable[[], float]) -> None:
    if clock() > deadline:
        raise ReplyTooSlow("the reply was not complete in time")


def _decompressor(response: httpx.Response) -> zlib._Decompress | None:
    """An inflater for gzip or zlib-wrapped deflate; None for identity. Unknown encodings are ignored, as httpx
    does; stacked ones (a bomb of bombs) are refused."""
    content_encoding = response.headers.get("Content-Encoding", "")
    encodings = [name.strip().lower() for name in content_encoding.split(",") if name.strip()]
    encodings = [name for name in encodings if name in {"gzip", "x-gzip", "deflate"}]
    if not encodings:
        return None
    if len(encodings) > 1:
        reason = f"Content-Encoding {content_encoding[:60]!r}: stacked encodings are not supported"
        raise httpx.DecodingError(reason, request=response.request)
    return zlib.decompressobj(32 + zlib.MAX_WBITS)  # 32: a gzip or a zlib header, whichever comes


def reply_deadline(http: httpx.Client) -> float:
    """Seconds a whole reply may take on `http`: its read timeout (--request-timeout), or the default without one."""
    return http.timeout.read or defaults.REQUEST_TIMEOUT_SECONDS
