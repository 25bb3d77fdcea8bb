"""The estimate families by value: today's tokens, requests and estimated cost per project and model, and the
rate of the recent minutes with its usual, each checked against the fake organization's own figures at pinned
moments.

The expected figures never go through the exporter's pricing or estimate code: tokens and requests are the
fake's `usage_tokens` truth summed over the hourly buckets of the UTC day (the buckets the exporter reads), and
every bucket is priced here with genai-prices' `calc_price` as of 00:00 UTC of its day, in whole nanodollars
(half-even), as the estimates are priced. The rate is the README's: the 8 complete minutes that end 2 minutes
before the current one, 1-minute buckets priced alike, the largest minute counted as the second largest, in USD
per hour; its usual the median over the 7 days before of the same minutes, prorated from the hourly buckets.
The exporter runs in-process against the fake Admin API on loopback, one cycle an hour before the moment and one
at it (so its usage history holds every hour the usual reads), and the families are read from its registry.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN
from fractions import Fraction
from pathlib import Path
from statistics import median

import pytest
from genai_prices import Usage, calc_price
from prometheus_client.metrics_core import Metric

from openai_cost_exporter.app import build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.fake.prices import EMBEDDING_MODEL, UNPRICED_MODEL

KEY = "sk-admin-estimate-values"
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
NANOS = 10**9
HISTORY_DAYS = 7  # the usual is the median over the last 7 days (README)
UNATTRIBUTED = "unattributed"  # the project_id of usage outside any project
DIRECTIONS = ("input", "cached_input", "output")
MINUTE = dt.timedelta(minutes=1)
WINDOW_MINUTES, LAG_MINUTES = 8, 2  # the README's recent window
STEADY_MODEL = "gpt-4.1-2025-04-14"  # what "Steady Search" uses, round the clock
TOKENS, REQUESTS, TODAY = "openai_usage_tokens", "openai_usage_requests", "openai_estimated_daily_cost_usd"
RATE, USUAL = "openai_estimated_cost_usd_per_hour", "openai_estimated_usual_cost_usd_per_hour"
#: The README's label names of each family, in the order of the keys below.
LABELS = {
    TOKENS: ("project_id", "project", "model", "direction"),
    REQUESTS: ("project_id", "project", "model"),
    TODAY: ("project_id", "project", "model"),
    RATE: ("project_id", "project"),
    USUAL: ("project_id", "project"),
}
WEDNESDAY = dt.datetime(2026, 11, 25, 13, tzinfo=dt.UTC)
MOMENTS = {
    "wednesday-13:00": WEDNESDAY,
    "wednesday-13:45": WEDNESDAY + dt.timedelta(minutes=45),
    "sunday-00:20": dt.datetime(2026, 11, 29, 0, 20, tzinfo=dt.UTC),
    "first-of-month-00:30": dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.UTC),
}
Series = dict[tuple[str, ...], float]  # label values (in LABELS order) -> sample value


@dataclass(frozen=True)
class Seen:
    """What the exporter exposed at `now` (each estimate family's series), and the fake organization behind it."""

    org: FakeOrg
    now: dt.datetime
    families: dict[str, Series]


@dataclass(frozen=True)
class Truth:
    """The fake's own figures at one moment; money in nanodollars."""

    tokens: dict[tuple[str, str, str], int]  # (project_id, model, direction) -> today's tokens
    requests: dict[tuple[str, str], int]  # (project_id, model) -> today's requests
    today: dict[tuple[str, str], int]  # (project_id, model) -> today's buckets, priced
    rate: dict[str, Fraction]  # project_id -> the recent minutes, priced, per hour
    usual: dict[str, Fraction]  # project_id -> median of the same minutes on the 7 days before, per hour


def read_families(metrics: Iterable[Metric]) -> dict[str, Series]:
    """The estimate families' series keyed by their label values in the README's order; a series whose label
    names are not the README's is kept under "name=value" strings, so it matches no expected key."""
    families: dict[str, Series] = {name: {} for name in LABELS}
    for family in metrics:
        names = LABELS.get(family.name)
        if names is None:
            continue
        for sample in family.samples:
            labels = sample.labels
            if sorted(labels) == sorted(names):
                key = tuple(labels[n] for n in names)
            else:
                key = tuple(f"{k}={v}" for k, v in labels.items())
            families[family.name][key] = sample.value
    return families


def run_exporter(now: dt.datetime, state_dir: Path, *, warm: bool) -> Seen:
    """The families at `now` after a cycle at it, preceded (`warm`) by one an hour before, the clock pinned."""
    clock = FrozenClock(now - HOUR if warm else now)
    # No spike project: its "today" runs 4x, which the hours stored by the earlier cycle would keep across
    # midnight. The runaway project ("Agent Loop", 10x) gives a rate far from its usual.
    org = FakeOrg.generate(
        seed=7, project_count=12, clock=clock, spike_project=False, rhythm_projects=True, runaway_project=True
    )
    with FakeAdminAPI(org, admin_key=KEY) as api:
        settings = load_settings(base_url=api.base_url, admin_key=KEY, state_dir=state_dir, listen="")
        exporter = build_exporter(settings, clock=clock)
        try:
            reports = []
            if warm:
                reports.append(exporter.cycle.run_once())
                clock.current = now
            reports.append(exporter.cycle.run_once())
            families = read_families(exporter.registry.collect())
        finally:
            exporter.close()
    assert all(report.ok for report in reports), [report.failed_stages for report in reports]
    return Seen(org, now, families)


@pytest.fixture(scope="module", params=list(MOMENTS.values()), ids=list(MOMENTS))
def seen(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Seen:
    now: dt.datetime = request.param
    return run_exporter(now, tmp_path_factory.mktemp("state"), warm=True)


def priced_nanos(model: str, hour: dt.datetime, counts: tuple[int, int, int, int]) -> int | None:
    """genai-prices' price of one hourly bucket's tokens as of 00:00 UTC of its day, in whole nanodollars
    (half-even); None for a model genai-prices has no price for."""
    tokens, cached, output, _ = counts
    midnight = dt.datetime.combine(hour.date(), dt.time(), dt.UTC)
    usage = Usage(input_tokens=tokens, cache_read_tokens=cached, output_tokens=output)
    try:
        price = calc_price(usage, model, provider_id="openai", genai_request_timestamp=midnight)
    except LookupError:
        return None
    return int((price.total_price * NANOS).to_integral_value(ROUND_HALF_EVEN))


def truth(org: FakeOrg, now: dt.datetime) -> Truth:
    """The fake's figures at `now`, hourly bucket by hourly bucket as its usage endpoints serve them."""
    current = now.replace(minute=0, second=0, microsecond=0)
    midnight = current.replace(hour=0)
    today_hours = {midnight + k * HOUR for k in range(current.hour + 1)}
    window_hours = {current - n * DAY - k * HOUR for n in range(HISTORY_DAYS + 1) for k in (0, 1)}
    tokens: dict[tuple[str, str, str], int] = defaultdict(int)
    requests: dict[tuple[str, str], int] = defaultdict(int)
    today: dict[tuple[str, str], int] = defaultdict(int)
    spent: dict[str, dict[dt.datetime, int]] = defaultdict(dict)  # project_id -> hour -> priced nanodollars
    for spender, groups in zip(org.spenders, org.usage_groups, strict=True):
        pid = spender.project_id or UNATTRIBUTED
        for model, _ in groups:
            for hour in sorted(today_hours | window_hours):
                counts = org.usage_tokens(spender.project_id, model, hour, hour + HOUR)
                if not any(counts):
                    continue  # the endpoint serves no row for this bucket
                nanos = priced_nanos(model, hour, counts)
                if nanos is not None:
                    spent[pid][hour] = spent[pid].get(hour, 0) + nanos
                if hour not in today_hours:
                    continue
                total, cached, output, count = counts
                for direction, n in zip(DIRECTIONS, (total - cached, cached, output), strict=True):
                    tokens[(pid, model, direction)] += n
                requests[(pid, model)] += count
                if nanos is not None:
                    today[(pid, model)] += nanos
    rate: dict[str, Fraction] = {}
    usual: dict[str, Fraction] = {}
    end = now.replace(second=0, microsecond=0) - LAG_MINUTES * MINUTE
    start = end - WINDOW_MINUTES * MINUTE
    minutes = minute_truth(org, start, end)
    # The days of today's kind (weekdays, or weekend days) of the week before: a week holds two of each at least.
    weekend = now.date().weekday() >= 5
    alike = [n for n in range(1, HISTORY_DAYS + 1) if ((now.date() - dt.timedelta(days=n)).weekday() >= 5) == weekend]
    for pid, hours in spent.items():
        if current not in hours and current - HOUR not in hours:
            continue  # nothing priced in the last two hourly buckets: no rate series
        rate[pid] = steady_sum(minutes.get(pid, {})) * Fraction(60, WINDOW_MINUTES)
        usual[pid] = median(prorated(hours, start - n * DAY, end - n * DAY) for n in alike)
    return Truth(dict(tokens), dict(requests), dict(today), rate, usual)


def minute_truth(org: FakeOrg, start: dt.datetime, end: dt.datetime) -> dict[str, dict[dt.datetime, int]]:
    """Priced nanodollars per project and 1-minute bucket of [start, end), each (project, model) priced alone."""
    spent: dict[str, dict[dt.datetime, int]] = defaultdict(dict)
    for spender, groups in zip(org.spenders, org.usage_groups, strict=True):
        pid = spender.project_id or UNATTRIBUTED
        for model, _ in groups:
            minute = start
            while minute < end:
                counts = org.usage_tokens(spender.project_id, model, minute, minute + MINUTE)
                nanos = priced_nanos(model, minute, counts) if any(counts) else None
                if nanos is not None:
                    spent[pid][minute] = spent[pid].get(minute, 0) + nanos
                minute += MINUTE
    return spent


def steady_sum(minutes: dict[dt.datetime, int]) -> int:
    """The minutes' sum with the largest counted as the second largest (0 for fewer than two minutes)."""
    ordered = sorted(minutes.values(), reverse=True)
    return sum(ordered) - ordered[0] + ordered[1] if len(ordered) > 1 else 0


def prorated(hours: dict[dt.datetime, int], start: dt.datetime, end: dt.datetime) -> Fraction:
    """Nanodollars per hour of [start, end), each hourly bucket's spend taken as even within its hour."""
    total = Fraction(0)
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        overlap = min(end, hour + HOUR) - max(start, hour)
        total += Fraction(hours.get(hour, 0)) * Fraction(int(overlap.total_seconds()), 3600)
        hour += HOUR
    return total * Fraction(3600, int((end - start).total_seconds()))


@pytest.fixture(scope="module")
def expected(seen: Seen) -> Truth:
    return truth(seen.org, seen.now)


def name_of(org: FakeOrg, pid: str) -> str:
    if pid == UNATTRIBUTED:
        return pid
    name = org.project(pid).name
    assert name is not None  # every project with usage in this organization has a name
    return name


def usd(nanos: Fraction | int) -> float:
    return float(Fraction(nanos) / NANOS)


def steady_search(org: FakeOrg) -> tuple[str, str]:
    assert org.steady_search_project_id is not None
    return org.steady_search_project_id, name_of(org, org.steady_search_project_id)


def test_tokens_per_project_model_and_direction_are_the_fakes(seen: Seen, expected: Truth) -> None:
    """openai_usage_tokens holds, under model=<model> and direction=<direction>, the fake's tokens of the day."""
    want = {(pid, name_of(seen.org, pid), model, d): float(n) for (pid, model, d), n in expected.tokens.items()}
    assert seen.families[TOKENS] == want
    steady = (*steady_search(seen.org), STEADY_MODEL)
    assert all(seen.families[TOKENS][(*steady, d)] > 0 for d in DIRECTIONS)  # each direction its own figure
    assert len({seen.families[TOKENS][(*steady, d)] for d in DIRECTIONS}) == len(DIRECTIONS)


def test_requests_per_project_and_model_are_the_fakes(seen: Seen, expected: Truth) -> None:
    """openai_usage_requests holds the fake's model requests of the day, per project and model."""
    want = {(pid, name_of(seen.org, pid), model): float(n) for (pid, model), n in expected.requests.items()}
    assert seen.families[REQUESTS] == want
    assert seen.families[REQUESTS][(*steady_search(seen.org), STEADY_MODEL)] >= 1


def test_estimated_daily_cost_is_the_fakes_tokens_priced(seen: Seen, expected: Truth) -> None:
    """openai_estimated_daily_cost_usd per project and model is the day's buckets priced with genai-prices; the
    unpriced model's tokens are counted but never priced."""
    want = {(pid, name_of(seen.org, pid), model): usd(n) for (pid, model), n in expected.today.items()}
    assert seen.families[TODAY] == want
    assert seen.families[TODAY][(*steady_search(seen.org), STEADY_MODEL)] > 0
    embeddings = seen.org.embeddings_project_id
    assert embeddings is not None
    assert seen.families[TODAY][(embeddings, name_of(seen.org, embeddings), EMBEDDING_MODEL)] > 0
    assert UNPRICED_MODEL not in {model for _, _, model in seen.families[TODAY]}
    assert UNPRICED_MODEL in {model for _, _, model, _ in seen.families[TOKENS]}


def test_rate_is_the_fakes_recent_minutes_priced(seen: Seen, expected: Truth) -> None:
    """openai_estimated_cost_usd_per_hour is the priced recent window of minutes, per hour, of each project with
    usage in the last two hours."""
    want = {(pid, name_of(seen.org, pid)): usd(n) for pid, n in expected.rate.items()}
    assert seen.families[RATE] == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert seen.families[RATE][steady_search(seen.org)] > 0


def test_usual_rate_is_the_median_of_the_fakes_same_minutes(seen: Seen, expected: Truth) -> None:
    """openai_estimated_usual_cost_usd_per_hour is the median of the same minutes on the days of today's kind
    (weekdays, or weekend days) of the 7 before, prorated from the hours, in the first hour of a day too (its
    window begins in the hour before that day)."""
    want = {(pid, name_of(seen.org, pid)): usd(expected.usual[pid]) for pid in expected.rate}
    assert seen.families[USUAL] == pytest.approx(want, rel=1e-12, abs=1e-12)
    agent = seen.org.agent_loop_project_id
    assert agent is not None
    key = (agent, name_of(seen.org, agent))
    assert seen.families[RATE][key] > 3 * seen.families[USUAL][key] > 0  # the runaway: 10x since before the hour


def test_usual_rate_of_a_cold_start_is_the_median_of_the_fakes_same_minutes(tmp_path: Path) -> None:
    """On the first cycle too, the usual is the median of the same minutes on the days of today's kind before."""
    now = MOMENTS["wednesday-13:45"]
    cold = run_exporter(now, tmp_path, warm=False)
    expected = truth(cold.org, now)
    want = {(pid, name_of(cold.org, pid)): usd(expected.usual[pid]) for pid in expected.rate}
    assert cold.families[USUAL] == pytest.approx(want, rel=1e-12, abs=1e-12)
