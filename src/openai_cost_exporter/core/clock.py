"""Time, injected: every component asks a `Clock`, so tests move time instead of sleeping."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass
class FrozenClock:
    """A clock for tests and the simulated organization: it moves only when told."""

    current: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC))

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, delta: dt.timedelta) -> None:
        self.current += delta


#: For tests of the CLI as a separate process: the process's clock, frozen at an ISO time (`2026-11-29T00:20Z`), or
#: `@FILE`: the ISO time written in FILE, read again whenever it changes, so a test steps a running daemon's clock.
#: Tests pin "now" this way instead of waiting for 23:50 or 00:20 UTC. Never set in production (a warning says so).
TEST_NOW_ENV = "OPENAI_COST_EXPORTER_TEST_NOW"
#: Tests only: retries keep their attempts but skip their back-off waits (stamina's test mode), as in-process.
TEST_NO_BACKOFF_ENV = "OPENAI_COST_EXPORTER_TEST_NO_BACKOFF"


def parse_utc(text: str) -> dt.datetime:
    """An ISO time as a timezone-aware datetime; a time without an offset is UTC."""
    moment = dt.datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass
class FileClock:
    """A clock a test steps from outside the process: the ISO time in `path`, read again when the file changes."""

    path: Path
    _seen: tuple[int, int] = (-1, -1)
    _current: dt.datetime = field(default_factory=lambda: dt.datetime.min.replace(tzinfo=dt.UTC))

    def now(self) -> dt.datetime:
        stat = self.path.stat()
        if (stat.st_mtime_ns, stat.st_size) != self._seen:
            text = self.path.read_text(encoding="utf-8")
            if not text.strip():  # caught between a writer's truncate and its write: the time it had holds
                return self._current
            self._current = parse_utc(text)
            self._seen = (stat.st_mtime_ns, stat.st_size)
        return self._current


def clock_from_env(environ: Mapping[str, str] | None = None) -> Clock:
    """The system clock; under TEST_NOW_ENV (tests only) a frozen clock, or a `FileClock` for `@FILE`, with a
    warning so no deployment runs on a test clock unnoticed."""
    value = (os.environ if environ is None else environ).get(TEST_NOW_ENV, "").strip()
    if not value:
        return SystemClock()
    clock: FrozenClock | FileClock
    clock = FileClock(Path(value[1:])) if value.startswith("@") else FrozenClock(parse_utc(value))
    log.warning("%s is set: this process's clock is a test clock, now %s (tests only)", TEST_NOW_ENV, clock.now())
    return clock
