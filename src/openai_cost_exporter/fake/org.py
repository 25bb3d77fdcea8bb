"""A simulated OpenAI organization: its projects, and their spend as billed costs and usage, computed on demand.

Nothing is stored per day: the spend is a pure function of the seed (fake/spend.py), which keeps 2,000 projects
x 3 line items x 400 days cheap. Amounts are integer nanodollars inside (9 decimal places, like the long
decimals OpenAI sends) and `Decimal` outside.

Billed costs lag usage (openai-admin-api.md §4, §9): today's cost cell is what was spent up to
`now - cost_lag`; closed days are complete. Usage (fake/usage.py) shows spend up to `now - usage_lag`, as
tokens priced by genai-prices (fake/prices.py). The spike project is the exception on purpose: its today runs
at SPIKE_FACTOR and is billed without lag and never below noon's total, so the demo alerts at any hour.

Tests change the truth with `set_cost` (one billed cell; usage is not affected), `scale_today` (a spend jump,
billed and usage) and `start_runaway` (a rate jump from a moment on); the sums the exporter must reproduce come
from `daily_total`, `daily_totals`, `line_item_totals`, `spend_between` and `usage_tokens`.

Projects have API keys (fake/keys.py): every amount splits over them exactly, so `key_totals` and
`key_line_item_totals` add up to `daily_totals` and `line_item_totals`. The organization and a few projects
have hard spend limits (fake/limits.py); `set_spend_limit` changes them.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import Collection
from decimal import Decimal

from openai_cost_exporter.core.clock import Clock, SystemClock
from openai_cost_exporter.fake.keys import FakeApiKey, KeyBook, KeyCell, split_cells
from openai_cost_exporter.fake.limits import (
    FAR_RANKS,
    NEAR_RANK,
    REACHED_RANK,
    initial_limits,
    limit_candidates,
    ranked,
)
from openai_cost_exporter.fake.plan import (
    AWKWARD_NAMES,
    DEFAULT_NAME,
    DIRECTIONS,
    MODELS,
    SPIKE_NAME,
    TEAM_NAMES,
    TOOL_ITEMS,
    FakeProject,
    Plan,
    Spender,
    from_nanos,
    to_nanos,
)
from openai_cost_exporter.fake.prices import PRICES, UsageGroups, usage_groups
from openai_cost_exporter.fake.roster import Roster, build_roster
from openai_cost_exporter.fake.spend import NOISE_TABLE_SIZE, SPIKE_FACTOR, Cell, SpendModel
from openai_cost_exporter.fake.traffic import Runaway, day_second

__all__ = [
    "AWKWARD_NAMES", "DEFAULT_NAME", "DIRECTIONS", "MODELS", "NANOS", "SPIKE_FACTOR", "SPIKE_MIN_PARTIAL",
    "SPIKE_NAME", "TEAM_NAMES", "TOOL_ITEMS", "FakeOrg", "FakeProject", "Spender", "from_nanos", "to_nanos",
]  # fmt: skip

NANOS = 10**9
SPIKE_MIN_PARTIAL = 43_200  # seconds: the spike project's billed today never looks younger than noon
DEFAULT_COST_LAG = dt.timedelta(hours=3)
DEFAULT_USAGE_LAG = dt.timedelta(seconds=60)
_ALNUM = string.ascii_letters + string.digits


class FakeOrg:
    """Projects and deterministic spend of a simulated organization; `FakeOrg.generate` builds one."""

    def __init__(
        self, *, seed: int, clock: Clock, roster: Roster, noise: tuple[tuple[int, ...], tuple[int, ...]]
    ) -> None:
        self.seed = seed
        self.clock = clock
        self.projects = roster.projects
        self.spenders = roster.spenders
        self.cost_lag = DEFAULT_COST_LAG  # billed costs of today cover spend up to now - cost_lag
        self.usage_lag = DEFAULT_USAGE_LAG  # usage buckets cover spend up to now - usage_lag
        self.spike_project_id = roster.ids.get("spike")
        self.embeddings_project_id = roster.ids.get("embeddings")
        self.unpriced_project_id = roster.ids.get("unpriced")
        self.nightly_batch_project_id = roster.ids.get("nightly_batch")
        self.steady_search_project_id = roster.ids.get("steady_search")
        self.tiny_tool_project_id = roster.ids.get("tiny_tool")
        self.agent_loop_project_id = roster.ids.get("agent_loop")
        self.organization_id = "org-" + "".join(random.Random(f"org:{seed}").choices(_ALNUM, k=24))  # noqa: S311 fake data, not secrets
        self.usage_groups: list[UsageGroups] = [usage_groups([li for li, _, _ in s.items]) for s in self.spenders]
        self.spend = SpendModel(seed, self.spenders, noise)
        self._by_id = {p.id: p for p in self.projects}
        self._spender = {s.project_id: i for i, s in enumerate(self.spenders)}
        candidates = limit_candidates(self.projects, set(roster.ids.values()))
        self.many_keys_project_id = _rank(candidates, 0)  # the busiest: MANY_KEYS listed keys
        self.near_limit_project_id = _rank(candidates, NEAR_RANK)  # month-to-date ~85% of its limit
        self.limit_reached_project_id = _rank(candidates, REACHED_RANK)  # "enforcing"
        self.far_limit_project_ids = ranked(candidates, *FAR_RANKS)  # limits far above their spend
        self.keys = KeyBook(seed, int(clock.now().timestamp()), self.projects, self.spenders, self.many_keys_project_id)
        self.spend_limits = initial_limits(self.projects, candidates, self._month_nanos)

    @classmethod
    def generate(
        cls,
        *,
        seed: int = 7,
        project_count: int = 40,
        archived_count: int | None = None,
        line_items_per_project: int = 3,
        history_days: int = 400,
        clock: Clock | None = None,
        spike_project: bool = True,
        unattributed: bool = True,
        rhythm_projects: bool = False,
        batch_peak_hour: int = 2,
        runaway_project: bool = False,
    ) -> FakeOrg:
        """Build an organization; same arguments and same clock day give the same numbers.

        `rhythm_projects` adds "Nightly Batch" (peak at `batch_peak_hour` UTC), "Steady Search" and "Tiny
        Tool"; `runaway_project` adds "Agent Loop", running at 10x since 40 minutes before the clock's now.
        Both come on top of `project_count` and leave the other projects' numbers unchanged."""
        clock = clock or SystemClock()
        now = clock.now()
        plan = Plan(seed, now.date(), history_days, line_items_per_project)
        roster = build_roster(
            plan, project_count, archived_count, spike=spike_project, unattributed=unattributed,
            rhythm=rhythm_projects, batch_peak_hour=batch_peak_hour, runaway=runaway_project,
        )  # fmt: skip
        org = cls(seed=seed, clock=clock, roster=roster, noise=plan.noise_tables(NOISE_TABLE_SIZE))
        if org.agent_loop_project_id is not None:
            org.start_runaway(org.agent_loop_project_id, Decimal(10), now - dt.timedelta(minutes=40))
        return org

    def project(self, project_id: str) -> FakeProject:
        """The project with this id; KeyError if there is none."""
        return self._by_id[project_id]

    # ---- billed costs ------------------------------------------------------------------------------------

    def cells(
        self, day: dt.date, project_ids: Collection[str | None] | None = None, *, include_zero: bool = False
    ) -> list[Cell]:
        """Every billed (project_id, line_item, nanodollars) of a UTC day as of the clock's now, non-zero ones
        only unless `include_zero` (then zero cells of projects alive that day are kept too)."""
        o = day.toordinal()
        today, second = day_second(int(self.clock.now().timestamp()))
        out: list[Cell] = []
        if o <= today:
            spenders = self.spenders
            if project_ids is not None:
                spenders = [s for s in spenders if s.project_id in project_ids]
            if o == today:
                self._today_cells(spenders, o, second, include_zero, out)
            else:
                self.spend.day_cells(spenders, o, include_zero, out)
        return self.spend.apply_overrides(o, out, project_ids, include_zero)

    def _today_cells(self, spenders: list[Spender], o: int, second: int, include_zero: bool, out: list[Cell]) -> None:
        lagged = max(0, second - int(self.cost_lag.total_seconds()))
        for s in spenders:
            # The spike project is billed without lag (at 4x since midnight), so the demo's spike alert shows in
            # the first cycle at any hour: the exporter compares it with what it usually spends by this hour.
            partial = second if s.spike else lagged
            self.spend.billed_cells(s, o, o, partial, include_zero, out)

    def item_spend(self, index: int, start: int, end: int) -> list[int]:
        """Nanodollars spent per item of spender `index` in [start, end) (Unix seconds, cut at nothing)."""
        today = day_second(int(self.clock.now().timestamp()))[0]
        return self.spend.item_spend(self.spenders[index], start, end, today)

    def usage_end(self) -> int:
        """Unix seconds up to which usage is visible: the clock's now minus `usage_lag`."""
        return int((self.clock.now() - self.usage_lag).timestamp())

    # ---- truth for tests ---------------------------------------------------------------------------------

    def line_item_totals(self, day: dt.date) -> dict[tuple[str | None, str], Decimal]:
        """Truth: billed spend per (project_id, line_item) on a day, non-zero cells only."""
        return {(p, li): from_nanos(n) for p, li, n in self.cells(day)}

    def daily_totals(self, day: dt.date) -> dict[str | None, Decimal]:
        """Truth: billed spend per project_id (None = unattributed) on a day, non-zero ones only."""
        sums: dict[str | None, int] = {}
        for p, _, n in self.cells(day):
            sums[p] = sums.get(p, 0) + n
        return {p: from_nanos(n) for p, n in sums.items() if n}

    def daily_total(self, day: dt.date, project_id: str | None) -> Decimal:
        """Truth: one project's billed spend on a day (0 when it spent nothing)."""
        return from_nanos(sum(n for _, _, n in self.cells(day, (project_id,))))

    def spend_between(self, project_id: str | None, start: dt.datetime, end: dt.datetime) -> Decimal:
        """Truth: what the project spent in [start, end), cut at the clock's now (runaways included; as billed
        once the lag has passed, except `set_cost` overrides and the spike project's unlagged today)."""
        index = self._spender.get(project_id)
        stop = min(int(end.timestamp()), int(self.clock.now().timestamp()))
        if index is None:
            return Decimal(0)
        return from_nanos(sum(self.item_spend(index, int(start.timestamp()), stop)))

    def hourly_spend(self, project_id: str | None, hour_start: dt.datetime) -> Decimal:
        """Truth: what the project spent in the hour from `hour_start` (see `spend_between`)."""
        return self.spend_between(project_id, hour_start, hour_start + dt.timedelta(hours=1))

    def usage_tokens(
        self, project_id: str | None, model: str, start: dt.datetime, end: dt.datetime
    ) -> tuple[int, int, int, int]:
        """Truth: (input incl. cached, cached input, output tokens, requests) the usage API reports for one
        project and model over [start, end) as one bucket, cut at now - usage_lag."""
        index = self._spender.get(project_id)
        stop = min(int(end.timestamp()), self.usage_end())
        groups = dict(self.usage_groups[index]) if index is not None else {}
        if index is None or model not in groups:
            return (0, 0, 0, 0)
        spend = self.item_spend(index, int(start.timestamp()), stop)
        by_direction = [0, 0, 0]
        for item, direction in groups[model]:
            by_direction[direction] += spend[item]
        return PRICES[model].counts(by_direction)

    def month_to_date(self, project_id: str | None) -> Decimal:
        """Truth: the project's billed spend from the 1st of the clock's month up to now (days as `daily_total`)."""
        return from_nanos(self._month_nanos(project_id))

    def _month_nanos(self, project_id: str | None) -> int:
        today = self.clock.now().date()
        days = (today.replace(day=1) + dt.timedelta(days=n) for n in range(today.day))
        return sum(n for day in days for _, _, n in self.cells(day, (project_id,)))

    # ---- API keys and spend limits -------------------------------------------------------------------------

    def api_keys(self, project_id: str) -> list[FakeApiKey]:
        """The project's keys as the API lists them, in its order (deleted ones left out); KeyError if unknown."""
        self.project(project_id)
        ring = self.keys.ring(project_id)
        return list(ring.listed) if ring else []

    def all_api_keys(self, project_id: str) -> list[FakeApiKey]:
        """Truth: every key that spent for the project, the deleted one (not listed) last; KeyError if unknown."""
        self.project(project_id)
        ring = self.keys.ring(project_id)
        return list(ring.keys) if ring else []

    def key_cells(
        self, day: dt.date, project_ids: Collection[str | None] | None = None, *, include_zero: bool = False
    ) -> list[KeyCell]:
        """`cells` split over the projects' keys: (project_id, api_key_id or None, line_item, nanodollars)."""
        cells = self.cells(day, project_ids, include_zero=include_zero)
        return split_cells(self.keys, day.toordinal(), cells, include_zero)

    def key_totals(self, day: dt.date) -> dict[tuple[str | None, str | None], Decimal]:
        """Truth: billed spend per (project_id, api_key_id) on a day (api_key_id None: outside API keys),
        summed over line items, non-zero ones only."""
        sums: dict[tuple[str | None, str | None], int] = {}
        for p, k, _, n in self.key_cells(day):
            sums[(p, k)] = sums.get((p, k), 0) + n
        return {key: from_nanos(n) for key, n in sums.items() if n}

    def key_line_item_totals(self, day: dt.date) -> dict[tuple[str | None, str | None, str], Decimal]:
        """Truth: billed spend per (project_id, api_key_id, line_item) on a day, non-zero ones only."""
        return {(p, k, li): from_nanos(n) for p, k, li, n in self.key_cells(day)}

    def spend_limit(self, project_id: str | None) -> tuple[int, str] | None:
        """The hard limit of a project (None: of the organization) as (cents a month, enforcement status)."""
        limit = self.spend_limits.get(project_id)
        return None if limit is None else (limit.cents, limit.status)

    def set_spend_limit(self, project_id: str | None, cents: int | None, status: str = "inactive") -> None:
        """Set (None cents: remove) the hard limit of a project or (project_id None) of the organization."""
        self._check_project(project_id)
        self.spend_limits.set(project_id, cents, status)

    # ---- switches ------------------------------------------------------------------------------------------

    def set_cost(self, day: dt.date, project_id: str | None, line_item: str, amount: Decimal) -> None:
        """Override one billed cell with an exact amount (not cut by the time of day; usage is unchanged)."""
        self._check_project(project_id)
        self.spend.set_cost(day.toordinal(), project_id, line_item, to_nanos(amount))

    def scale_today(self, project_id: str | None, factor: Decimal) -> None:
        """A spend jump: multiply the project's spend on the clock's current day by `factor`."""
        self._check_project(project_id)
        if not factor.is_finite():
            raise ValueError("factor must be finite")
        self.spend.scale(self.clock.now().date().toordinal(), project_id, factor)

    def start_runaway(self, project_id: str | None, factor: Decimal, started_at: dt.datetime) -> None:
        """Multiply the project's spend rate by `factor` from `started_at` on (replacing a running runaway)."""
        self._check_project(project_id)
        self.spend.start_runaway(project_id, Runaway.from_factor(factor, int(started_at.timestamp())))

    def stop_runaway(self, project_id: str | None, stopped_at: dt.datetime | None = None) -> None:
        """End the project's running runaway at `stopped_at` (default: the clock's now); spend before stays."""
        self.spend.stop_runaway(project_id, int((stopped_at or self.clock.now()).timestamp()))

    def _check_project(self, project_id: str | None) -> None:
        if project_id is not None and project_id not in self._by_id:
            raise ValueError("unknown project_id")


def _rank(candidates: list[str], rank: int) -> str | None:
    return candidates[rank] if rank < len(candidates) else None
