"""Pushing closed days by API key: the `openai_daily_api_key_cost_usd` history beside the projects' (history.py).

It runs just before the project push of the same days (the cycle's push stage, `backfill`): the project push marks
the days pushed, so when this one fails nothing is marked and both are tried again. The samples carry the project
series' timestamps (`day_sample_time` with the day's earlier pushes), so a revision lands a millisecond after the
value it replaces. Only days fetched by key have key samples; on such a day every series of the chunk gets one
(0 where it spent nothing), so a revision that removes a key's spend overwrites it. Keys are capped as the live
series are (api_keys.py), ranked over the days of each chunk: memory follows the chunk, not the history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from openai_cost_exporter.core.models import DAY, ZERO, ApiKey
from openai_cost_exporter.export.collector import day_sample_time
from openai_cost_exporter.export.key_metrics import API_KEY_COST, add_keys, key_family
from openai_cost_exporter.export.push import Pusher
from openai_cost_exporter.figures.api_keys import capped, kept_keys
from openai_cost_exporter.store.ledger import Ledger

#: Closed days per key push: a week of 2,000 projects with a few keys each is ~70k samples.
KEY_CHUNK_DAYS = 7


def push_key_days(
    pusher: Pusher,
    ledger: Ledger,
    *,
    before: dt.date,
    names: Mapping[str, str],
    keys: Mapping[str, ApiKey],
    top: int,
    on_samples: Callable[[int], None] | None = None,
) -> int:
    """Push the key series of every unpushed day before `before` that was fetched by key; return the samples.

    Raises PushError (nothing is marked: the project push that follows marks the days)."""
    pending = [day for day in ledger.unpushed_days() if day < before]
    if not pending:
        return 0
    pushes = ledger.pushed_days(pending[0], pending[-1] + DAY, pusher.target)
    samples = 0
    for first in range(0, len(pending), KEY_CHUNK_DAYS):
        chunk = pending[first : first + KEY_CHUNK_DAYS]
        by_key = {day: amounts for day, amounts in ledger.key_totals(chunk[0], chunk[-1] + DAY).items() if day in chunk}
        if not by_key:
            continue
        kept = kept_keys(by_key, top)
        days = {day: capped(amounts, kept) for day, amounts in by_key.items()}
        stamps = {day: day_sample_time(day, pushes.get(day, 0)) for day in days}
        history = _KeyHistory(days, names, keys, stamps)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(history)
        pusher.push(registry)
        samples += history.sample_count
        if on_samples is not None:
            on_samples(history.sample_count)
    return samples


class _KeyHistory(Collector):
    """The capped key amounts of closed days, each series on each day (0 where none), timestamped in its day."""

    def __init__(
        self,
        days: Mapping[dt.date, Mapping[tuple[str, str], Decimal]],
        names: Mapping[str, str],
        keys: Mapping[str, ApiKey],
        stamps: Mapping[dt.date, float],
    ) -> None:
        self._days = days
        self._names = names
        self._keys = keys
        self._stamps = stamps
        self._series = sorted({series for amounts in days.values() for series in amounts})
        self.sample_count = len(self._series) * len(days)

    def collect(self) -> Iterator[Metric]:
        family = key_family(API_KEY_COST, "Final cost of a closed UTC day, per API key.")
        for day in sorted(self._days):
            amounts = self._days[day]
            full = {series: amounts.get(series, ZERO) for series in self._series}
            add_keys(family, full, self._names, self._keys, self._stamps[day])
        yield family
