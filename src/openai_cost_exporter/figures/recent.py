"""The runaway rule's recent window: the last minutes of usage, in 1-minute buckets (issue 20, item 4).

Read from hourly buckets, a runaway has to weigh 3x in a 60-minute window before the rule sees it (a 5x runaway
took half an hour). So each cycle also reads the last minutes in 1-minute buckets (openai-admin-api.md §3:
`bucket_width=1m`), and the rate becomes the spend of the last RECENT_MINUTES complete minutes, scaled to USD per
hour; estimates.py sets it against the usual of the same minutes of the clock on the earlier days, from the
hourly history. Usage lags (a minute still filling reads low, and would dilute the rate), so the window ends
LAG_MINUTES before the current minute. One lone minute may not make a runaway: the largest minute of the window
counts as much as the second largest (a single large request at a small project is not a rate).

Each cycle asks the whole window again, RECENT_MINUTES buckets in one page per endpoint, and the store keeps just
those: late usage revises a stored minute (a minute taken as complete too early, a usage endpoint further behind
than LAG_MINUTES, is read again at the next cycle), and a cycle's figures never rest on an earlier fetch, as the
hourly ones do not. No `project_ids` filter: usage rows exist only for projects that used something in the
minute, so the filter would not shrink the reply (only lengthen the URL, 2,000 ids are ~60 KB) and it would hide
a project that starts from nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from openai_cost_exporter.core.money import ZERO, exact_sum
from openai_cost_exporter.sources.openai.client import AdminClient
from openai_cost_exporter.sources.openai.usage_responses import UsagePage
from openai_cost_exporter.store.usage_store import UsageStore

MINUTE = 60
HOUR = 3600
#: Complete minutes in the window. A runaway of factor f needs 2 x RECENT_MINUTES / (f - 1) minutes in it to weigh
#: 3x; fewer minutes, more noise (bench/detection_delay.py measures the choice).
RECENT_MINUTES = 8
#: Minutes before the current one that are taken as still filling (the usage endpoint's lag).
LAG_MINUTES = 2
#: Buckets per 1-minute page (the API allows 1,440): more than the window, so one page per endpoint.
USAGE_MINUTES_LIMIT = 15


@dataclass(frozen=True, slots=True)
class MinuteFetch:
    """This cycle's 1-minute request: the window [start, end)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class RecentWindow:
    """Spend of the window [start, end) per project, and per project and model, in USD per hour."""

    start: int
    end: int
    rate: dict[str, Decimal]
    models: dict[str, dict[str, Decimal]]


def window_end(now: dt.datetime) -> int:
    """Unix seconds where the window ends at `now`: the end of the last minute taken as complete."""
    return int(now.timestamp()) // MINUTE * MINUTE - LAG_MINUTES * MINUTE


def plan_minutes(now: dt.datetime, minutes: int = RECENT_MINUTES) -> MinuteFetch:
    """The minutes to ask at `now`: the window."""
    end = window_end(now)
    return MinuteFetch(end - minutes * MINUTE, end)


def minute_chains(
    client: AdminClient, kinds: tuple[str, ...], fetch: MinuteFetch
) -> dict[str, Callable[[], Iterator[UsagePage]]]:
    """One chain per endpoint, named `<kind> minutes` (the name its thread bears)."""

    def chain(kind: str) -> Callable[[], Iterator[UsagePage]]:
        return lambda: client.iter_usage(kind, fetch.start, fetch.end, width="1m", limit=USAGE_MINUTES_LIMIT)

    return {f"{kind} minutes": chain(kind) for kind in kinds}


def mark_minutes(store: UsageStore, fetch: MinuteFetch) -> None:
    """Every chain stored: the window is covered; rows before it are pruned."""
    store.mark_minutes(fetch.start, fetch.end)


def recent_window(store: UsageStore, now: dt.datetime, minutes: int = RECENT_MINUTES) -> RecentWindow | None:
    """The window of `now` from the stored 1-minute rows; None when they do not cover it (e.g. a backtest's past
    hour, or usage fetched without minutes): the caller falls back to the hourly window."""
    end = window_end(now)
    start = end - minutes * MINUTE
    covered = store.minutes_covered()
    if covered is None or not covered[0] <= start < end <= covered[1]:
        return None
    spent: dict[str, dict[int, Decimal]] = defaultdict(dict)
    models: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for (pid, model, minute), amount in store.by_minute(start, end).items():
        spent[pid][minute] = spent[pid].get(minute, ZERO) + amount
        models[pid][model] = models[pid].get(model, ZERO) + amount
    per_hour = Decimal(HOUR) / (end - start)
    return RecentWindow(
        start=start,
        end=end,
        rate={pid: steady_sum(list(by_minute.values())) * per_hour for pid, by_minute in spent.items()},
        models={pid: {m: amount * per_hour for m, amount in spend.items()} for pid, spend in models.items()},
    )


def steady_sum(amounts: list[Decimal]) -> Decimal:
    """The sum with its largest amount counted as the second largest: one minute alone does not make a rate."""
    top, second, *_ = [*sorted(amounts, reverse=True), ZERO, ZERO]
    return exact_sum(amounts) - top + second
