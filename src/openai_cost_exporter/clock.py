"""Time, injected: every component asks a `Clock`, so tests move time instead of sleeping."""

from __future__ import annotations

import datetime as dt
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
