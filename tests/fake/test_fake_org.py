"""Tests of the simulated organization: determinism, awkward names, spend shape, spike, mutations."""

from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal

import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.org import (
    DEFAULT_NAME,
    SPIKE_NAME,
    FakeOrg,
    from_nanos,
    to_nanos,
)

NOON = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
TODAY = NOON.date()
DAY = dt.timedelta(days=1)


def _org(**kwargs: object) -> FakeOrg:
    clock = kwargs.pop("clock", None) or FrozenClock(NOON)
    return FakeOrg.generate(clock=clock, **kwargs)  # type: ignore[arg-type]


def _mean_7(org: FakeOrg, project_id: str | None, today: dt.date) -> Decimal:
    return sum((org.daily_total(today - n * DAY, project_id) for n in range(1, 8)), Decimal(0)) / 7


def test_same_seed_gives_same_projects_and_numbers() -> None:
    """Two orgs from the same seed and clock agree on every project and every day's figures."""
    a, b = _org(seed=3), _org(seed=3)
    assert a.projects == b.projects
    assert a.organization_id == b.organization_id
    for n in range(0, 60, 7):
        assert a.line_item_totals(TODAY - n * DAY) == b.line_item_totals(TODAY - n * DAY)


def test_different_seeds_give_different_orgs() -> None:
    """Another seed gives other project ids and other amounts."""
    a, b = _org(seed=3), _org(seed=4)
    assert {p.id for p in a.projects}.isdisjoint({p.id for p in b.projects})
    assert a.daily_totals(TODAY - DAY) != b.daily_totals(TODAY - DAY)


@pytest.mark.parametrize("count", [8, 9, 40, 300])
def test_awkward_names_are_present(count: int) -> None:
    """From 8 projects on: quote, backslash, newline, unicode, a duplicate name, a null name, Default project."""
    names = [p.name for p in _org(project_count=count).projects]
    assert len(names) == count
    text = [n for n in names if n is not None]
    assert any('"' in n for n in text)
    assert any("\\" in n for n in text)
    assert any("\n" in n for n in text)
    assert any(not n.isascii() for n in text)
    assert any(text.count(n) == 2 for n in text)
    assert None in names
    assert DEFAULT_NAME in names


def test_spike_project_is_named_when_there_is_room() -> None:
    """With 9+ projects the spiking project is 'Search Reranker'; with fewer it is the default project."""
    big, small = _org(project_count=9), _org(project_count=8)
    assert big.spike_project_id is not None and big.project(big.spike_project_id).name == SPIKE_NAME
    assert small.spike_project_id is not None and small.project(small.spike_project_id).name == DEFAULT_NAME
    assert _org(spike_project=False).spike_project_id is None


def test_project_ids_look_real_and_are_unique() -> None:
    """Ids are proj_ plus 24 alphanumerics, all distinct."""
    projects = _org(project_count=500).projects
    assert all(re.fullmatch(r"proj_[A-Za-z0-9]{24}", p.id) for p in projects)
    assert len({p.id for p in projects}) == 500


@pytest.mark.parametrize("seed", [1, 7, 42])
@pytest.mark.parametrize("weekday_offset", range(7))
def test_spike_at_noon_is_well_above_its_7_day_mean(seed: int, weekday_offset: int) -> None:
    """At 12:00 UTC on any weekday the spike project's today-so-far is > 1.5x its 7-day mean and >= 1 USD."""
    clock = FrozenClock(NOON + weekday_offset * DAY)
    org = _org(seed=seed, clock=clock)
    assert org.spike_project_id is not None
    today = clock.now().date()
    so_far = org.daily_total(today, org.spike_project_id)
    assert so_far >= 1
    assert so_far > Decimal("1.5") * _mean_7(org, org.spike_project_id, today)


def test_without_spike_no_project_jumps_at_noon() -> None:
    """With spike_project=False no busy project's today-so-far at noon exceeds 1.5x its 7-day mean."""
    org = _org(spike_project=False, project_count=60)
    for p in org.projects:
        mean = _mean_7(org, p.id, TODAY)
        if mean > 1:
            assert org.daily_total(TODAY, p.id) < Decimal("1.5") * mean, p.name


@pytest.mark.parametrize("lag_hours", [0, 3])
def test_today_is_billed_up_to_now_minus_the_cost_lag(lag_hours: int) -> None:
    """Today's billed amount is the spend from midnight to now - cost_lag, whatever the project's profile."""
    clock = FrozenClock(dt.datetime(2026, 11, 25, 15, 37, 20, tzinfo=dt.UTC))
    org = _org(clock=clock, spike_project=False)
    org.cost_lag = dt.timedelta(hours=lag_hours)
    midnight = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    billed = org.daily_totals(clock.now().date())
    assert len(billed) > 20
    for pid, amount in billed.items():
        assert amount == org.spend_between(pid, midnight, clock.now() - org.cost_lag)
    if lag_hours:
        assert all(billed[p] < org.spend_between(p, midnight, clock.now()) for p in billed if billed[p] > 1)


def test_nothing_of_today_is_billed_before_the_lag_has_passed() -> None:
    """At 02:00 with a 3-hour lag no project but the spike one has billed costs today; yesterday is complete."""
    clock = FrozenClock(dt.datetime(2026, 11, 25, 2, tzinfo=dt.UTC))
    org = _org(clock=clock)
    assert set(org.daily_totals(clock.now().date())) == {org.spike_project_id}
    yesterday = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    for pid, amount in org.daily_totals(yesterday.date()).items():
        assert amount == org.spend_between(pid, yesterday, yesterday + DAY)


def test_future_days_and_days_before_history_are_empty() -> None:
    """Nothing is spent after today or before the history window."""
    org = _org(history_days=30)
    assert org.daily_totals(TODAY + DAY) == {}
    assert org.daily_totals(TODAY - 31 * DAY) == {}
    assert org.daily_totals(TODAY - 30 * DAY)


def test_default_archived_share_and_archived_fields() -> None:
    """About 10% are archived by default, with archived_at after created_at; the default project never is."""
    org = _org(project_count=40)
    archived = [p for p in org.projects if p.archived]
    assert len(archived) == 4
    assert all(p.status == "archived" and p.archived_at and p.archived_at > p.created_at for p in archived)
    assert all(p.status == "active" and p.archived_at is None for p in org.projects if not p.archived)
    assert not any(p.name == DEFAULT_NAME for p in archived)


def test_archived_count_is_honoured() -> None:
    """An explicit archived_count archives exactly that many projects."""
    assert sum(p.archived for p in _org(project_count=30, archived_count=12).projects) == 12


def test_archived_projects_stop_spending_at_archive_time() -> None:
    """No archived project has spend on or after its archive day, and some spent before it."""
    org = _org(project_count=200, archived_count=40, history_days=400)
    spent_before = False
    for p in (p for p in org.projects if p.archived):
        assert p.archived_at is not None
        archive_day = dt.datetime.fromtimestamp(p.archived_at, dt.UTC).date()
        assert org.daily_total(archive_day, p.id) == 0
        assert org.daily_total(min(archive_day + 3 * DAY, TODAY), p.id) == 0
        spent_before |= org.daily_total(archive_day - DAY, p.id) > 0
    assert spent_before


def test_some_projects_never_spend() -> None:
    """Projects with daily_usd 0 exist and have no cost on any day."""
    org = _org(project_count=200)
    idle = [p for p in org.projects if p.daily_usd == 0]
    assert idle
    for n in range(0, 90, 9):
        totals = org.daily_totals(TODAY - n * DAY)
        assert not any(p.id in totals for p in idle)


def test_spend_scale_ranges_from_cents_to_hundreds() -> None:
    """Daily spend per project runs from under a dollar to over a hundred dollars."""
    totals = _org(project_count=100).daily_totals(TODAY - 2 * DAY)
    assert min(totals.values()) < 1
    assert max(totals.values()) > 100


def test_weekends_are_quieter() -> None:
    """Over eight weeks the org spends less on Saturdays and Sundays than on weekdays."""
    org = _org(project_count=60, spike_project=False)
    by_weekday: dict[bool, list[Decimal]] = {True: [], False: []}
    for n in range(1, 57):
        day = TODAY - n * DAY
        by_weekday[day.weekday() >= 5].append(sum(org.daily_totals(day).values(), Decimal(0)))
    weekend = sum(by_weekday[True], Decimal(0)) / len(by_weekday[True])
    weekday = sum(by_weekday[False], Decimal(0)) / len(by_weekday[False])
    assert weekend < Decimal("0.75") * weekday


def test_unattributed_spend_appears_on_some_days_only() -> None:
    """A null project_id row appears on some days (not all), and never when unattributed=False."""
    org, plain = _org(), _org(unattributed=False)
    days = [TODAY - n * DAY for n in range(1, 61)]
    with_null = sum(None in org.daily_totals(d) for d in days)
    assert 0 < with_null < len(days)
    assert not any(None in plain.daily_totals(d) for d in days)


@pytest.mark.parametrize("per_project", [1, 3, 5])
def test_line_items_per_project(per_project: int) -> None:
    """Each project has that many distinct line items and only those appear in its costs."""
    org = _org(line_items_per_project=per_project)
    for p in org.projects:
        assert len(set(p.line_items)) == per_project
    for (pid, item), _ in org.line_item_totals(TODAY - DAY).items():
        if pid is not None:
            assert item in org.project(pid).line_items


def test_line_items_look_like_openai_ones() -> None:
    """Line items are '<model>, <direction>' strings, plus tool items such as web search calls."""
    org = _org(project_count=300, line_items_per_project=12)
    items = {li for p in org.projects for li in p.line_items}
    assert "gpt-4o-2024-08-06, input" in items and "gpt-4o-mini-2024-07-18, cached input" in items
    assert "web search tool calls" in items


def test_totals_agree_with_line_items_and_have_at_most_9_decimals() -> None:
    """daily_totals is the per-project sum of line_item_totals; amounts have up to 9 decimal places."""
    org = _org()
    day = TODAY - 5 * DAY
    sums: dict[str | None, Decimal] = {}
    for (pid, _), amount in org.line_item_totals(day).items():
        assert -9 <= amount.as_tuple().exponent <= 0  # type: ignore[operator]
        sums[pid] = sums.get(pid, Decimal(0)) + amount
    assert sums == org.daily_totals(day)
    some = next(iter(sums))
    assert org.daily_total(day, some) == sums[some]
    assert org.daily_total(day, "proj_unknown") == 0


def test_set_cost_overrides_adds_and_removes_cells() -> None:
    """set_cost replaces a cell, adds a new one, and a zero amount removes a cell from the truth."""
    org = _org()
    day = TODAY - 3 * DAY
    (pid, item), _ = next((k, v) for k, v in org.line_item_totals(day).items() if k[0] is not None)
    assert pid is not None
    org.set_cost(day, pid, item, Decimal("12.5"))
    org.set_cost(day, None, "brand new item", Decimal("0.000001"))
    cells = org.line_item_totals(day)
    assert cells[(pid, item)] == Decimal("12.5")
    assert cells[(None, "brand new item")] == Decimal("0.000001")
    org.set_cost(day, pid, item, Decimal(0))
    assert (pid, item) not in org.line_item_totals(day)


def test_set_cost_on_today_is_not_scaled_by_the_partial_day() -> None:
    """An override of today's cell is reported as given, whatever the time of day."""
    org = _org()
    pid = org.projects[2].id
    org.set_cost(TODAY, pid, org.project(pid).line_items[0], Decimal("7"))
    assert org.line_item_totals(TODAY)[(pid, org.project(pid).line_items[0])] == 7


def test_set_cost_respects_a_project_filter() -> None:
    """An added override cell for another project does not leak into a filtered query."""
    org = _org()
    a, b = org.projects[2].id, org.projects[3].id
    org.set_cost(TODAY - DAY, b, "new item", Decimal(3))
    assert all(p == a for p, _, _ in org.cells(TODAY - DAY, [a]))


@pytest.mark.parametrize("amount", [Decimal("0.0000000001"), Decimal("NaN"), Decimal("Infinity")])
def test_set_cost_rejects_amounts_it_cannot_represent(amount: Decimal) -> None:
    """More than 9 decimal places, NaN and infinity are refused."""
    with pytest.raises(ValueError, match="amount"):
        _org().set_cost(TODAY, None, "x", amount)


def test_mutations_reject_unknown_projects() -> None:
    """set_cost and scale_today refuse a project id the org does not have."""
    org = _org()
    with pytest.raises(ValueError, match="unknown project"):
        org.set_cost(TODAY, "proj_nope", "x", Decimal(1))
    with pytest.raises(ValueError, match="unknown project"):
        org.scale_today("proj_nope", Decimal(2))
    with pytest.raises(ValueError, match="finite"):
        org.scale_today(None, Decimal("NaN"))


def test_scale_today_multiplies_only_today() -> None:
    """A spend jump multiplies the project's today, leaves yesterday alone and ends at midnight."""
    clock = FrozenClock(NOON)
    org = _org(clock=clock)
    pid = max(org.daily_totals(TODAY), key=lambda p: org.daily_totals(TODAY)[p])
    before, yesterday = org.daily_total(TODAY, pid), org.daily_total(TODAY - DAY, pid)
    org.scale_today(pid, Decimal(4))
    assert abs(org.daily_total(TODAY, pid) - 4 * before) < Decimal("0.00000001")
    assert org.daily_total(TODAY - DAY, pid) == yesterday
    clock.advance(dt.timedelta(hours=13))
    tomorrow = clock.now().date()
    fresh = _org(clock=FrozenClock(clock.now()))
    assert org.daily_total(tomorrow, pid) == fresh.daily_total(tomorrow, pid)


def test_scale_today_applies_to_the_spike_project_too() -> None:
    """Scaling the spiking project multiplies its already spiking today."""
    org = _org()
    assert org.spike_project_id is not None
    before = org.daily_total(TODAY, org.spike_project_id)
    org.scale_today(org.spike_project_id, Decimal("0.5"))
    assert abs(org.daily_total(TODAY, org.spike_project_id) - before / 2) < Decimal("0.00000001")


def test_include_zero_keeps_zero_cells_of_live_projects() -> None:
    """include_zero returns the zero cells that the default view drops."""
    org = _org(project_count=200)
    day = TODAY - 10 * DAY
    assert any(n == 0 for _, _, n in org.cells(day, include_zero=True))
    assert all(n != 0 for _, _, n in org.cells(day))


@pytest.mark.parametrize("text", ["0", "12.5", "-3.25", "123.456789012"])
def test_nanos_round_trip(text: str) -> None:
    """to_nanos and from_nanos are exact inverses for up to 9 decimal places."""
    assert from_nanos(to_nanos(Decimal(text))) == Decimal(text)


def test_a_big_org_is_cheap() -> None:
    """2,000 projects x 3 line items: generating and computing 30 days takes well under a few seconds."""
    started = time.perf_counter()
    org = _org(project_count=2000)
    for n in range(30):
        org.cells(TODAY - n * DAY)
    assert time.perf_counter() - started < 5
