"""Pushing closed days: the one push path of the cycle and `backfill`.

A closed day's final totals are pushed once it closes, and again whenever a revision changes it (the ledger
marks such days unpushed in the transaction that stores them). Every project with spend on any pushed day, or
named by the caller, gets a sample on each of them (0 where none): no holes between chunks, and a revision that
removed a project's spend overwrites the old value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from openai_cost_exporter.collector import HistoryCollector, day_sample_time
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.models import DAY
from openai_cost_exporter.push import Pusher

#: Closed days per push: 3 days of 2,000 projects with 3 line items are ~20k samples (a week peaked at 140 MB).
PUSH_CHUNK_DAYS = 3


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
) -> Pushed:
    """Push every unpushed day before `before` from the ledger, oldest first, PUSH_CHUNK_DAYS at a time.

    A day is marked pushed only once its chunk was accepted; a failure raises PushError and the rest waits.
    """
    pending = [day for day in ledger.unpushed_days() if day < before]
    if not pending:
        return Pushed(0, 0)
    totals = ledger.project_totals(pending[0], pending[-1] + DAY)
    pushes = ledger.pushed_days(pending[0], pending[-1] + DAY)
    active = {pid for day in pending for pid in totals.get(day, {})} | set(also_projects)
    days = samples = 0
    for first in range(0, len(pending), PUSH_CHUNK_DAYS):
        chunk = pending[first : first + PUSH_CHUNK_DAYS]
        items = ledger.line_item_totals(chunk[0], chunk[-1] + DAY) if line_items else None
        history = HistoryCollector(
            {day: totals.get(day, {}) for day in chunk},
            names,
            {day: v for day, v in items.items() if day in chunk} if items is not None else None,
            active,
            stamps={day: day_sample_time(day, pushes.get(day, 0)) for day in chunk},
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(history)
        pusher.push(registry)
        ledger.mark_pushed(chunk)
        days += len(chunk)
        samples += history.sample_count
        if on_samples is not None:
            on_samples(history.sample_count)
    return Pushed(days, samples)
