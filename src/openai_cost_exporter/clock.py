"""Time, injected: every component asks a `Clock`, so tests move time instead of sleeping."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


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


#: For tests of the CLI as a separate process: an ISO time the process's clock starts at (it then runs at real
#: speed), so a test can put the exporter at 23:50 or 00:20 UTC instead of waiting for it. Never set in production.
TEST_NOW_ENV = "OPENAI_COST_EXPORTER_TEST_NOW"
#: Tests only: retries keep their attempts but skip their back-off waits (stamina's test mode), as in-process.
TEST_NO_BACKOFF_ENV = "OPENAI_COST_EXPORTER_TEST_NO_BACKOFF"


@dataclass
class OffsetClock:
    """The system clock moved to start at `start`: it runs at real speed from there."""

    start: dt.datetime
    _origin: float = field(default_factory=time.monotonic)

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=time.monotonic() - self._origin)


def clock_from_env(environ: Mapping[str, str] | None = None) -> Clock:
    """The system clock, or an `OffsetClock` when TEST_NOW_ENV is set (tests only)."""
    value = (os.environ if environ is None else environ).get(TEST_NOW_ENV, "").strip()
    if not value:
        return SystemClock()
    start = dt.datetime.fromisoformat(value)
    return OffsetClock(start if start.tzinfo else start.replace(tzinfo=dt.UTC))
