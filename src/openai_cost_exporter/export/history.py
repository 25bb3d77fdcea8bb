"""Pushing closed days: the one push path of the cycle and `backfill`.

A closed day's final totals are pushed once it closes, and again whenever a revision changes it (the ledger
marks such days unpushed in the transaction that stores them). Every project with spend on any pushed day, or
named by the caller, gets a sample on each of them (0 where none): no holes between chunks, and a revision that
removed a project's spend overwrites the old value.

Memory follows the chunk, not the history: the days are read from the ledger PUSH_CHUNK_DAYS at a time, written
straight into the text format (`HistoryCollector.text`), and a chunk is sent in a daemon thread while the next one
is read and written (the SQLite connection stays on the caller's thread), so at most two chunks are held at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from openai_cost_exporter.core.models import DAY
from openai_cost_exporter.core.side_by_side import Background
from openai_cost_exporter.export.collector import HistoryCollector, day_sample_time
from openai_cost_exporter.export.push import Pusher, TextRegistry
from openai_cost_exporter.store.ledger import Ledger

#: Closed days per push: 2 days of 2,000 projects with 3 line items are ~12k samples, 1.5 MB of text. With one
#: chunk sent while the next is written, a 180-day push of those added 18 MB to the process (3 days: 26 MB,
#: 7 days: 56 MB); VictoriaMetrics' ingestion, not the chunk size, sets its pace.
PUSH_CHUNK_DAYS = 2

_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Pushed:
    days: int
    samples: int


def push_closed_days(
    pusher: Pusher,
    ledger: Ledger,
    *,
    before: dt.date,
    names: Mapping[str, str],
    also_projects: Iterable[str] = (),
    line_items: bool,
    on_samples: Callable[[int], None] | None = None,
    spenders_known: Collection[dt.date] = (),
) -> Pushed:
    """Push every unpushed day before `before` from the ledger, oldest first, PUSH_CHUNK_DAYS at a time.

    `spenders_known` are days whose projects with cost rows are all in `also_projects` already (backfill's
    fetch saw them), so they are not read twice. A day is marked pushed only once its chunk was accepted; a
    failure raises PushError and the rest waits.
    """
    pending = [day for day in ledger.unpushed_days() if day < before]
    if not pending:
        return Pushed(0, 0)
    pushes = ledger.pushed_days(pending[0], pending[-1] + DAY, pusher.target)
    active = set(also_projects) | _spenders(ledger, [day for day in pending if day not in spenders_known])
    prefixes: dict[tuple[str, ...], bytes] = {}  # each series' line start, written once for the whole push
    counted = Pushed(0, 0)
    sending: _Sending | None = None
    try:
        for first in range(0, len(pending), PUSH_CHUNK_DAYS):
            chunk = pending[first : first + PUSH_CHUNK_DAYS]
            totals = _read(ledger.project_totals, chunk)
            items = _read(ledger.line_item_totals, chunk) if line_items else None
            stamps = {day: day_sample_time(day, pushes.get(day, 0)) for day in chunk}
            history = HistoryCollector({day: totals.get(day, {}) for day in chunk}, names, items, active, stamps)
            body = history.text(prefixes)
            if sending is not None:
                counted = _settle(sending, ledger, counted, on_samples)
            sending = _Sending(pusher, body, chunk, history.sample_count)
        last, sending = sending, None
        if last is not None:
            counted = _settle(last, ledger, counted, on_samples)
    finally:
        if sending is not None:  # failed on our side: the push under way ends (within its deadline) with the call
            sending.join()
    return counted


class _Sending:
    """One chunk's push, run in a daemon thread (a stopped process must not wait for a hanging target)."""

    def __init__(self, pusher: Pusher, body: bytes, days: Sequence[dt.date], samples: int) -> None:
        self.days, self.samples, self.target = days, samples, pusher.target
        self._push = Background("push", lambda: pusher.push(TextRegistry(body)))

    def join(self) -> None:
        self._push.join()

    def result(self) -> None:
        """Wait for the push; raise what it raised (PushError)."""
        self._push.result()


def _settle(sending: _Sending, ledger: Ledger, counted: Pushed, on_samples: Callable[[int], None] | None) -> Pushed:
    """Wait for a chunk's push and mark its days pushed once it was accepted."""
    sending.result()
    ledger.mark_pushed(sending.days, sending.target)
    if on_samples is not None:
        on_samples(sending.samples)
    return Pushed(counted.days + len(sending.days), counted.samples + sending.samples)


def _spenders(ledger: Ledger, days: Sequence[dt.date]) -> set[str]:
    """Projects with cost rows on any of `days`, read a chunk at a time."""
    found: set[str] = set()
    for first in range(0, len(days), PUSH_CHUNK_DAYS):
        for per_project in _read(ledger.project_totals, days[first : first + PUSH_CHUNK_DAYS]).values():
            found.update(per_project)
    return found


def _read(query: Callable[[dt.date, dt.date], dict[dt.date, _V]], days: Sequence[dt.date]) -> dict[dt.date, _V]:
    """`query` over just these days: a range per run of consecutive days, never the gaps between them."""
    found: dict[dt.date, _V] = {}
    for start, end in _runs(days):
        found.update(query(start, end))
    return found


def _runs(days: Sequence[dt.date]) -> Iterator[tuple[dt.date, dt.date]]:
    """[start, end) of each run of consecutive days in the sorted `days`."""
    start = previous = None
    for day in days:
        if previous is None or day != previous + DAY:
            if start is not None and previous is not None:
                yield start, previous + DAY
            start = day
        previous = day
    if start is not None and previous is not None:
        yield start, previous + DAY
