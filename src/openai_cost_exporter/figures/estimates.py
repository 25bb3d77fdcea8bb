"""Estimated spend from token usage: near-real-time, priced with genai-prices, never mixed with billed costs.

Usage arrives within minutes in hourly and 1-minute buckets (openai-admin-api.md §3, §9); the costs endpoint only
in daily buckets, hours late. `fetch_usage` brings the hourly buckets into the usage store (a cold start reads the
history window, a warm cycle only the last complete hour and the current one: one request per usage endpoint) and
the last minutes in 1-minute buckets (figures/recent.py: one more request per endpoint), priced as they are
stored. `build_estimates` reads the priced sums: the rate per project (USD per hour) of the recent window of
minutes, against the usual rate of the same minutes of the clock on the earlier days (their median, prorated from
the hourly history); the usual share of a day done by now, and today's estimate per project and model. Without
1-minute rows for the moment (a backtest's past hours), the rate is that of the last 60 minutes, from the hours.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from openai_cost_exporter.core.models import day_start
from openai_cost_exporter.core.money import ZERO, exact_sum
from openai_cost_exporter.core.side_by_side import SideBySide
from openai_cost_exporter.figures.baselines import is_weekend
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.figures.recent import (
    MinuteFetch,
    RecentWindow,
    mark_minutes,
    minute_chains,
    plan_minutes,
    recent_window,
)
from openai_cost_exporter.rules.runaway import RunawayFigures, median
from openai_cost_exporter.sources.openai.client import USAGE_HOURS_LIMIT, AdminClient
from openai_cost_exporter.sources.openai.usage_responses import UsagePage
from openai_cost_exporter.store.usage_store import UsageStore

HOUR = 3600
DAY_SECONDS = 86400
#: Fewest known days of the window's kind for a usual rate (a week holds two weekend days).
MIN_RATE_KIND_DAYS = 2
#: Fewest days of usage history for a usual rate at all (the median of fewer is one day's noise).
MIN_HISTORY_DAYS = 3
#: The usage endpoints read (moderations, images and audio are priced per unit, not per token: left out).
USAGE_KINDS = ("completions", "embeddings")
TOP_MODELS = 3
DIRECTIONS = ("input", "cached_input", "output")
#: A cold start's week of each endpoint is cut into this many windows, each a cursor chain, all fetched side by
#: side; a warm cycle's two hours are one page. Measured (bench/cold_cycle.py, 2,000 projects, 150 ms a response,
#: pages of USAGE_HOURS_LIMIT hours): 6-hour pages, 2 windows and 4 pages at once took 7.2 s and 108 MB; one
#: window and 2 pages at once, 10.6 s and 89 MB; 24-hour pages, 6.9 s and 150 MB (248 MB with 2 windows).
USAGE_WINDOWS = 2
#: Usage pages fetched, parsed or waiting to be stored, at most.
USAGE_PAGES_AT_ONCE = 4


@dataclass(frozen=True, slots=True)
class Estimates:
    """Priced usage of one moment; every figure is an estimate in USD."""

    taken_at: dt.datetime
    rate: Mapping[str, Decimal]  # project_id -> USD per hour of the recent window (or of the last 60 minutes)
    usual: Mapping[str, Decimal]  # project_id -> median USD per hour of the same minutes on the earlier days
    models: Mapping[str, list[tuple[str, Decimal]]]  # project_id -> models of that window, USD/h, largest first
    today: Mapping[tuple[str, str], Decimal]  # (project_id, model) -> today's estimate so far
    tokens: Mapping[tuple[str, str, str], int]  # (project_id, model, direction) -> today's tokens
    requests: Mapping[tuple[str, str], int]  # (project_id, model) -> today's requests
    unpriced: frozenset[str] = field(default_factory=frozenset)
    shares: Mapping[str, Decimal] = field(default_factory=dict)  # project_id -> usual share of a day done by now
    usual_known: bool = True  # False: fewer than MIN_HISTORY_DAYS days of usage; `usual` is empty

    def runaway_figures(self, names: Mapping[str, str]) -> list[RunawayFigures]:
        """The runaway rule's figures of every project with a rate, none while the usual is unknown (a history of
        fewer than MIN_HISTORY_DAYS days: a young organization's every project is not a runaway)."""
        if not self.usual_known:
            return []
        return [
            RunawayFigures(pid, names.get(pid, pid), self.rate[pid], self.usual.get(pid, ZERO), self.models[pid])
            for pid in sorted(self.rate)
        ]


def hour_of(moment: dt.datetime) -> int:
    """Unix seconds of the start of the hour `moment` falls in."""
    return int(moment.timestamp()) // HOUR * HOUR


def fetch_usage(
    client: AdminClient,
    store: UsageStore,
    book: PriceBook,
    now: dt.datetime,
    *,
    history_days: int,
    recent: bool = True,
) -> int:
    """Bring usage into the store, priced: the history window on a cold start, else from the last complete hour;
    and, with `recent`, the recent window's 1-minute buckets (without, the rate is read from the hours).

    The endpoints' cursor chains are fetched side by side (side_by_side.py), each page parsed in its chain's
    thread and stored here as it comes, so a failure later loses nothing already read. Returns the pages read.
    """
    current = hour_of(now)
    since = store.fetched_until()
    oldest = current - history_days * 24 * HOUR - HOUR  # the usual's oldest 60 minutes reach into the hour before
    start = oldest if since is None else max(oldest, min(since, current) - HOUR)
    end = int(now.timestamp()) + 1
    windows = {
        f"{kind} {first}": (kind, first, last)  # the chain's name, which its thread bears
        for kind in USAGE_KINDS
        for first, last in split_hours(start, end, USAGE_WINDOWS, USAGE_HOURS_LIMIT)
    }
    chains = {name: functools.partial(client.iter_usage, *window) for name, window in windows.items()}
    minutes: MinuteFetch | None = plan_minutes(now) if recent else None
    minute_names = minute_chains(client, USAGE_KINDS, minutes) if minutes is not None else {}
    pages = _store_chains({**chains, **minute_names}, store, book, set(minute_names))
    store.mark_fetched(current)
    if minutes is not None:
        mark_minutes(store, minutes)
    store.prune(oldest - DAY_SECONDS)  # the share of the day reads whole days of the history window
    return pages


def _store_chains(
    chains: Mapping[str, Callable[[], Iterator[UsagePage]]], store: UsageStore, book: PriceBook, minutes: set[str]
) -> int:
    """Fetch the chains side by side and store each page as it comes (a chain's name begins with its kind); the
    first failure stops the others and is raised once what is under way is stored. Returns the pages stored."""
    fetch = SideBySide(chains, at_once=USAGE_PAGES_AT_ONCE, unbounded=minutes)  # a 1-minute chain is one small page
    pages = 0
    failure: BaseException | None = None
    for chain, page in fetch:
        if isinstance(page, UsagePage):
            replace = store.replace_minutes if chain in minutes else store.replace_hours
            replace(chain.split()[0], page.buckets, page.rows, book.estimate)
            pages += 1
            del page  # stored: not held while the next one is awaited
        elif page.error is not None and failure is None:
            failure = page.error
            fetch.stop()  # the other chains ask for no more; what is under way is still stored
    if failure is not None:
        raise failure
    return pages


def split_hours(start: int, end: int, parts: int, page_hours: int) -> list[tuple[int, int]]:
    """[start, end) (Unix seconds, whole hours but for the end) cut into at most `parts` windows of whole pages."""
    hours = -(-(end - start) // HOUR)
    pages = -(-hours // page_hours)
    span = -(-pages // max(1, min(parts, pages))) * page_hours * HOUR
    return [(first, min(end, first + span)) for first in range(start, end, span)]


def key_rates(
    client: AdminClient, book: PriceBook, now: dt.datetime, project_ids: Sequence[str]
) -> dict[str, dict[str, Decimal]]:
    """Estimated spend of the last 60 minutes per API key of these projects (what drives a runaway): one request
    per usage endpoint, grouped by key, weighted as the runaway rule's window (`_window`)."""
    current = hour_of(now)
    fraction = Decimal((now - dt.datetime.fromtimestamp(current, dt.UTC)).total_seconds()) / HOUR
    rates: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for kind in USAGE_KINDS:
        for page in client.iter_usage(
            kind, current - HOUR, int(now.timestamp()) + 1, api_keys=True, project_ids=project_ids
        ):
            for row in page.rows:
                amount = book.estimate(row)
                if amount is None or row.api_key_id is None:
                    continue
                weighted = amount if row.start >= current else amount * (1 - fraction)
                keys = rates[row.project_id]
                keys[row.api_key_id] = keys.get(row.api_key_id, ZERO) + weighted
    return dict(rates)


def build_estimates(store: UsageStore, now: dt.datetime, *, history_days: int) -> Estimates:
    """The figures of `now` from the stored, priced usage of the history window (and of the recent minutes)."""
    current = hour_of(now)
    today_start = day_start(now.date())
    fraction = Decimal((now - dt.datetime.fromtimestamp(current, dt.UTC)).total_seconds()) / HOUR
    window = recent_window(store, now)
    rate, usual = dict[str, Decimal](), dict[str, Decimal]()
    shares: dict[str, Decimal] = {}
    recent: dict[str, dict[str, Decimal]] = defaultdict(dict)
    today: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for (pid, model, hour), amount in store.by_model(today_start - HOUR, current + HOUR).items():
        if hour >= current - HOUR:
            weight = Decimal(1) if hour == current else 1 - fraction
            recent[pid][model] = recent[pid].get(model, ZERO) + amount * weight
        if hour >= today_start:
            today[(pid, model)] += amount
    if window is not None:  # the minutes drive the rate and its models; a project idle in them is at 0
        recent = {pid: window.models.get(pid, {}) for pid in recent.keys() | window.models.keys()}
    days = usual_days(now, history_days, store.first_hour(), window.start if window is not None else None)
    # From the hour before the oldest day: the usual's 60 minutes of the 7th day before 01:00 begin there.
    for pid, hours in store.hourly(today_start - history_days * DAY_SECONDS - HOUR, current + HOUR):
        if pid in recent:
            rate[pid] = _window(hours, current, fraction) if window is None else window.rate.get(pid, ZERO)
        if days is not None:
            usual[pid] = _usual(hours, current, fraction, days, window)
        if (share := _share(hours, now, history_days)) is not None:
            shares[pid] = share
    counts = store.counts(today_start, current + HOUR)
    return Estimates(
        taken_at=now,
        rate=rate,
        usual=usual,
        models={pid: _top(models) for pid, models in recent.items()},
        today=dict(today),
        tokens={(*key, direction): c[i] for key, c in counts.items() for i, direction in enumerate(DIRECTIONS)},
        requests={key: c[3] for key, c in counts.items()},
        unpriced=store.unpriced_models(),
        shares=shares,
        usual_known=days is not None,
    )


def _window(hours: Mapping[int, Decimal], current: int, fraction: Decimal) -> Decimal:
    """Spend of the 60 minutes ending `fraction` into the hour `current`: all of that hour so far, and the
    matching tail of the hour before."""
    return hours.get(current, ZERO) + hours.get(current - HOUR, ZERO) * (1 - fraction)


def usual_days(
    now: dt.datetime, history_days: int, first_hour: int | None, start: int | None = None
) -> list[int] | None:
    """Which earlier days (1 = yesterday) the usual rate is the median of: those of the history window the usage
    reaches back to (before a young organization's first usage, the rate is unknown, not $0), of the same kind
    (weekdays, or weekend days) as the window's start (`start`, Unix seconds; by default the hour before `now`'s: a
    Monday 00:05's window is Sunday night): a weekend-heavy project's Saturday is not judged against its quiet
    weekdays. None while fewer than MIN_HISTORY_DAYS days are known, or fewer than MIN_RATE_KIND_DAYS of the kind (a
    young organization's first weekend): no usual yet."""
    anchor = start if start is not None else hour_of(now) - HOUR
    oldest = first_hour if first_hour is not None else hour_of(now)
    known = [n for n in range(1, history_days + 1) if anchor // HOUR * HOUR - n * DAY_SECONDS >= oldest]
    weekend = _weekend(anchor)
    alike = [n for n in known if _weekend(anchor - n * DAY_SECONDS) == weekend]
    if len(known) < MIN_HISTORY_DAYS or len(alike) < MIN_RATE_KIND_DAYS:
        return None
    return alike


def _weekend(unix: int) -> bool:
    return is_weekend(dt.datetime.fromtimestamp(unix, dt.UTC).date())


def _usual(
    hours: Mapping[int, Decimal], current: int, fraction: Decimal, days: list[int], window: RecentWindow | None
) -> Decimal:
    """Median over the earlier `days` of the same 60 minutes of the clock (complete hours, so prorated), or of the
    recent window's minutes."""
    if window is not None:
        return _usual_between(hours, window.start, window.end, days)
    windows = []
    for n in days:
        hour = current - n * DAY_SECONDS
        windows.append(hours.get(hour, ZERO) * fraction + hours.get(hour - HOUR, ZERO) * (1 - fraction))
    return median(windows)


def _usual_between(hours: Mapping[int, Decimal], start: int, end: int, days: list[int]) -> Decimal:
    """Median over the earlier `days` of the spend of [start, end) of the clock, USD per hour, prorated from the
    hours it overlaps (an hour's spend taken as even within it)."""
    windows = []
    for n in days:
        first, last = start - n * DAY_SECONDS, end - n * DAY_SECONDS
        overlaps = (
            hours.get(hour, ZERO) * (min(last, hour + HOUR) - max(first, hour))
            for hour in range(first // HOUR * HOUR, last, HOUR)
        )
        windows.append(exact_sum(overlaps) / (last - first))  # USD x seconds / seconds: USD per hour
    return median(windows)


def _share(hours: Mapping[int, Decimal], now: dt.datetime, days: int) -> Decimal | None:
    """The median, over the earlier days with spend, of the share of the day's spend done by this time of day."""
    current = hour_of(now)
    fraction = Decimal((now - dt.datetime.fromtimestamp(current, dt.UTC)).total_seconds()) / HOUR
    midnight = day_start(now.date())
    shares = []
    for n in range(1, days + 1):
        start, hour = midnight - n * DAY_SECONDS, current - n * DAY_SECONDS
        spent = [hours.get(start + h * HOUR, ZERO) for h in range(24)]
        total = exact_sum(spent)
        if total > 0:
            index = (hour - start) // HOUR
            shares.append((exact_sum(spent[:index]) + spent[index] * fraction) / total)
    return median(shares) if shares else None


def _top(models: Mapping[str, Decimal]) -> list[tuple[str, Decimal]]:
    return sorted(models.items(), key=lambda item: item[1], reverse=True)[:TOP_MODELS]
