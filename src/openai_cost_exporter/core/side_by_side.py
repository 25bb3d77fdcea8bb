"""Work beside the calling thread: independent cursor chains fetched side by side (`SideBySide`), their pages
handed one by one to the calling thread, and one task in the background (`Background`).

Each chain (an iterator of parsed pages: a costs window, a usage endpoint, the project list) runs in a daemon
thread of its own, so its requests wait on the network while the calling thread stores what came; every request
is the client's, with its retries and its `Retry-After` waits, in the thread that sent it. The calling thread
(the only one that touches the SQLite connection) gets `(chain, page)` as pages arrive and `(chain, Ended)` once
a chain has ended. At most `at_once` pages of the bounded chains are being fetched, parsed or waiting at a time
(a request waits for a free one), so memory grows with the page, not with the window.

When the caller calls `stop()` (a chain failed), no chain starts a new request; pages under way still arrive.
Daemon threads, not a `ThreadPoolExecutor`'s: the interpreter joins those at exit, so a request that hangs would
keep a stopped process alive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: Seconds a worker waits for a free page before it checks whether the fetch was abandoned.
_POLL = 0.1


@dataclass(frozen=True, slots=True)
class Ended:
    """A chain has ended: after its last page, or failing with `error` (what was handed over before stays)."""

    error: BaseException | None


class SideBySide(Generic[T]):
    """`chains` (name -> a function returning the chain's page iterator) fetched side by side; iterate once."""

    def __init__(
        self, chains: Mapping[str, Callable[[], Iterator[T]]], *, at_once: int, unbounded: Collection[str] = ()
    ) -> None:
        self._chains = dict(chains)
        self._unbounded = frozenset(unbounded)  # small chains (the project list) that take no page slot
        self._inbox: queue.Queue[tuple[str, T | Ended]] = queue.Queue()
        self._slots = threading.BoundedSemaphore(at_once)
        self._stop = threading.Event()  # start no new request
        self._abandoned = threading.Event()  # the calling thread is gone: wait for nothing

    def stop(self) -> None:
        """No chain starts another request; what is under way still arrives."""
        self._stop.set()

    def __iter__(self) -> Iterator[tuple[str, T | Ended]]:
        for name, chain in self._chains.items():
            threading.Thread(target=self._run, args=(name, chain), name=name, daemon=True).start()
        running = len(self._chains)
        try:
            while running:
                name, item = self._inbox.get()
                ended = isinstance(item, Ended)
                yield name, item
                del item  # not held while the next page is awaited
                if ended:
                    running -= 1
                elif name not in self._unbounded:
                    self._slots.release()  # stored (or dropped) by the caller: room for the next page
        finally:
            self._abandoned.set()  # if the caller failed or left early, no worker waits for it
            self._stop.set()

    def _run(self, name: str, chain: Callable[[], Iterator[T]]) -> None:
        bounded = name not in self._unbounded
        error: BaseException | None = None
        try:
            pages = chain()
            while True:
                if bounded:
                    self._take_slot()  # before the request: the page it brings has room
                elif self._stop.is_set():
                    raise _Stopped
                try:
                    page = next(pages)
                except BaseException:  # its end, or its failure: the slot was not used
                    if bounded:
                        self._slots.release()
                    raise
                self._inbox.put((name, page))  # the calling thread frees the slot
                del page  # the calling thread's now: freed as soon as it is stored
        except (StopIteration, _Stopped):
            pass
        except BaseException as exc:  # handed to the calling thread, which decides
            error = exc
        self._inbox.put((name, Ended(error)))

    def _take_slot(self) -> None:
        while not self._slots.acquire(timeout=_POLL):
            if self._abandoned.is_set():
                raise _Stopped
        if self._stop.is_set():
            self._slots.release()
            raise _Stopped


class Background(Generic[T]):
    """`work()` run in a daemon thread from now on; `result()` returns its value or raises its exception."""

    def __init__(self, name: str, work: Callable[[], T]) -> None:
        self._work = work
        self._value: list[T] = []  # its one value, once the work returned
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value.append(self._work())
        except BaseException as exc:  # handed to the thread that asks for the result, which raises it
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> T:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value[0]


class _Stopped(Exception):
    """The fetch was stopped or abandoned: this chain asks for no more."""
