"""The HTTP vocabulary the fake Admin API's endpoints share: query-string readers, `Reply` and `Response`.

A `Reply` is an error raised while handling; it carries the status and the fields of OpenAI's error envelope
(openai-admin-openapi.yaml `Error`), which `fake/api.py` renders. The readers raise a 400 `Reply` naming the bad
parameter, as the real API does. A `Response` is what the server writes, in one piece or streamed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

Params = dict[str, list[str]]  # a parsed query string, as `urllib.parse.parse_qs` returns it


class Reply(Exception):
    """An error response: raised while handling, rendered with the error envelope."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = "invalid_request_error"


def bad_request(message: str, param: str) -> Reply:
    """A 400 about one query parameter."""
    return Reply(400, message, param=param)


def one_param(params: Params, name: str) -> str | None:
    """The first value of `name`, or None if absent."""
    values = params.get(name)
    return values[0] if values else None


def many_params(params: Params, name: str) -> list[str]:
    """Both array encodings in use: `name=a&name=b` and the SDK's `name[]=a` (openai-admin-api.md §1.1)."""
    return params.get(name, []) + params.get(f"{name}[]", [])


def int_param(params: Params, name: str) -> int | None:
    """A non-negative integer parameter, or None if absent."""
    raw = one_param(params, name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise bad_request(f"Invalid value for '{name}': expected an integer, got {raw[:40]!r}.", name)
    return int(raw)


def limit_param(params: Params, default: int, maximum: int) -> int:
    """`limit`, checked against 1..maximum; `default` if absent."""
    limit = int_param(params, "limit")
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise bad_request(f"Invalid value for 'limit': must be between 1 and {maximum}.", "limit")
    return limit


@dataclass
class Response:
    """What the handler writes: a body in one piece, or streamed in chunks."""

    status: int
    body: bytes | Iterable[str]
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_response(status: int, payload: object) -> Response:
    """A JSON body in one piece."""
    return Response(status, json.dumps(payload).encode())


def truncate(response: Response) -> Response:
    """The same response with only the first half of its body (valid headers, cut JSON)."""
    whole = response.body if isinstance(response.body, bytes) else "".join(response.body).encode()
    return Response(response.status, whole[: len(whole) // 2], response.headers, response.content_type)


#: Characters per piece of a trickled body.
TRICKLE_PIECE = 8


def trickle(response: Response, pause: float, *, sleep: Callable[[float], None] = time.sleep) -> Response:
    """The same response with its body streamed `TRICKLE_PIECE` characters at a time, `pause` seconds apart."""
    whole = response.body.decode() if isinstance(response.body, bytes) else "".join(response.body)

    def pieces() -> Iterator[str]:
        for start in range(0, len(whole), TRICKLE_PIECE):
            sleep(pause)
            yield whole[start : start + TRICKLE_PIECE]

    return Response(response.status, pieces(), response.headers, response.content_type)
