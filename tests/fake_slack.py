"""A recording fake Slack incoming webhook on 127.0.0.1, for tests and for the monitoring-stack runs.

In-process:

    with FakeSlack() as slack:
        slack.fail_next(2, status=500)
        ... post to slack.url ...
        posts = slack.wait_for(1)

Besides failing, it can take a post (it counts in `posts`: Slack has shown it) and then answer late
(`answer_late_next`), trickle its answer a byte at a time (`trickle_next`) or drop the connection without an
answer (`drop_next`); it can also hang, holding the connection without a word and then closing it, having taken
the post or not (`hang_next`: the client cannot tell which). `on_post` runs on each POST before the answer (a test
fills the disk there).

As a process (vmalert/Alertmanager stack tests): `python tests/fake_slack.py PORT OUTFILE` appends each
accepted POST body as one JSON line to OUTFILE; PORT 0 picks a free port, printed as `listening on HOST:PORT`.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

HOST = "127.0.0.1"
WEBHOOK_PATH = "/services/T000/B000/XXXXSECRETXXXX"


@dataclass(frozen=True)
class Post:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it is not JSON
    status: int  # what the fake answered
    answered: bool = True  # False when it closed the connection without an answer (`drop_next`, `hang_next`)


@dataclass(frozen=True)
class _Failure:
    """How to answer one POST: a failure status, or a 200 that is late, trickled or never sent."""

    status: int
    body: str
    headers: dict[str, str]
    delay: float = 0.0  # seconds before answering
    trickle: float = 0.0  # seconds between the bytes of the answer
    drop: bool = False  # close the connection instead of answering (after `delay`)
    taken: bool | None = None  # whether Slack shows the post; None: when it answers 200
    accepted: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "accepted", self.status == 200 if self.taken is None else self.taken)


class FakeSlack:
    """A ThreadingHTTPServer in a thread; records every POST, fails on demand."""

    def __init__(self, port: int = 0, outfile: Path | None = None) -> None:
        self._cond = threading.Condition()
        self._failures: deque[_Failure] = deque()
        self.posts: list[Post] = []  # accepted (200) posts
        self.requests: list[Post] = []  # every POST, failed ones included
        self._outfile = outfile
        self.on_post: Callable[[], None] | None = None
        self.stopping = threading.Event()  # ends the waits of late and trickled answers
        self._server = ThreadingHTTPServer((HOST, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{WEBHOOK_PATH}"

    def fail_next(
        self, n: int, status: int = 500, body: str = "internal_error", headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next `n` POSTs with `status` (and these extra headers)."""
        with self._cond:
            self._failures.extend(_Failure(status, body, dict(headers or {})) for _ in range(n))

    def rate_limit_next(self, n: int, retry_after: float = 1) -> None:
        """Answer the next `n` POSTs with 429 and a Retry-After header."""
        header = {"Retry-After": f"{retry_after:g}"}
        with self._cond:
            self._failures.extend(_Failure(429, "rate_limited", header) for _ in range(n))

    def answer_late_next(self, n: int, delay: float) -> None:
        """Take the next `n` POSTs (Slack shows them) but answer 200 only `delay` seconds later."""
        with self._cond:
            self._failures.extend(_Failure(200, "ok", {}, delay=delay) for _ in range(n))

    def trickle_next(self, n: int, interval: float, status: int = 200, body: str = "ok") -> None:
        """Take the next `n` POSTs, then send the answer (a 200 unless told) one byte every `interval` seconds."""
        with self._cond:
            self._failures.extend(_Failure(status, body, {}, trickle=interval) for _ in range(n))

    def drop_next(self, n: int) -> None:
        """Take the next `n` POSTs, then close the connection without an answer."""
        with self._cond:
            self._failures.extend(_Failure(200, "ok", {}, drop=True) for _ in range(n))

    def hang_next(self, n: int, seconds: float = 30.0, *, taken: bool = False) -> None:
        """Hold each of the next `n` POSTs `seconds` without a byte of answer, then close the connection; with
        `taken`, Slack has shown each of them (it counts in `posts`), else none was."""
        with self._cond:
            self._failures.extend(_Failure(200, "", {}, delay=seconds, drop=True, taken=taken) for _ in range(n))

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Post]:
        """Block until `n` posts were accepted (or raise TimeoutError); return them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.posts) >= n, timeout=timeout):
                raise TimeoutError(f"{len(self.posts)} of {n} Slack posts after {timeout} s")
            return list(self.posts)

    def record(self, path: str, headers: dict[str, str], raw: bytes) -> _Failure | None:
        """Store one POST; return the failure to answer with, if one is queued."""
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        with self._cond:
            failure = self._failures.popleft() if self._failures else None
            post = Post(path, headers, body, failure.status if failure else 200, not (failure and failure.drop))
            self.requests.append(post)
            if failure is None or failure.accepted:
                self.posts.append(post)
                self._append_line(body)
            self._cond.notify_all()
        return failure

    def _append_line(self, body: Any) -> None:
        if self._outfile is not None:
            with self._outfile.open("a", encoding="utf-8") as out:
                out.write(json.dumps(body) + "\n")

    def start(self) -> FakeSlack:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-slack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            failure = fake.record(self.path, dict(self.headers.items()), raw)
            if fake.on_post is not None:
                fake.on_post()
            answer = failure or _Failure(200, "ok", {})
            if fake.stopping.wait(answer.delay) or answer.drop:
                self.close_connection = True
                return
            try:
                self._answer(answer)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: what is under test
                self.close_connection = True

        def _answer(self, answer: _Failure) -> None:
            lines = [f"HTTP/1.0 {answer.status} {'OK' if answer.status == 200 else 'Error'}"]
            headers = {"Content-Type": "text/plain", "Content-Length": str(len(answer.body)), **answer.headers}
            lines += [f"{name}: {value}" for name, value in headers.items()]
            raw = ("\r\n".join(lines) + "\r\n\r\n" + answer.body).encode()
            if not answer.trickle:
                self.wfile.write(raw)
                return
            for i in range(len(raw)):
                if fake.stopping.wait(answer.trickle):
                    return
                self.wfile.write(raw[i : i + 1])
                self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the records instead
            return

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT, appending each accepted POST body to OUTFILE as a JSON line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: fake_slack.py PORT OUTFILE", file=sys.stderr)
        return 2
    fake = FakeSlack(int(args[0]), Path(args[1]))
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with fake:
        print(f"listening on {HOST}:{fake.port}", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
