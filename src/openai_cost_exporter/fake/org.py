"""A simulated OpenAI organization: projects and their daily spend, computed on demand.

Nothing is stored per day: a cell (project, line item, UTC day) is a pure function of the seed, built from
per-project base levels, a weekday rhythm and a noise table indexed by `key(project, line item) ^ key(day)`.
That keeps 2,000 projects x 3 line items x 400 days cheap. Amounts are integer nanodollars inside (9 decimal
places, like the long decimals OpenAI sends) and `Decimal` outside.

Today (the clock's UTC day) is partial: a cell is the full-day amount times the fraction of the day elapsed.
Tests change the truth with `set_cost` (one cell) and `scale_today` (a spend jump); the sums the exporter
must reproduce come from `daily_total`, `daily_totals` and `line_item_totals`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import string
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from openai_cost_exporter.clock import Clock, SystemClock
from openai_cost_exporter.models import day_start

NANOS = 10**9
SPIKE_FACTOR = 4
SPIKE_NAME = "Search Reranker"
SPIKE_MIN_PARTIAL = 43_200  # seconds: the spike project's today never looks younger than noon
DEFAULT_NAME = "Default project"
#: Names that break naive label escaping; all present when project_count >= 8 (with the default project).
AWKWARD_NAMES: tuple[str | None, ...] = (
    'Team "Quotes" Bot',
    "C:\\ml\\batch jobs",
    "Line one\nLine two",
    "Übersetzung 🚀 東京",
    "Support Bot",
    "Support Bot",
    None,
)
TEAM_NAMES = (
    "Checkout Assistant", "Fraud Scoring", "Docs Summarizer", "Sales Copilot", "Data Platform", "Ranking",
    "Mobile App", "Email Triage", "Analytics Agent", "Onboarding Bot", "Legal Review", "Voice Agent",
    "Growth Experiments", "Support Macros", "Translation", "Code Review", "Knowledge Base", "QA Evals",
    "Marketing Copy", "Internal Tools", "Recommendations", "Research", "Billing Insights", "Security Triage",
)  # fmt: skip
MODELS = ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4.1-2025-04-14", "o3-2025-04-16")
DIRECTIONS = ("input", "output", "cached input")
TOOL_ITEMS = ("web search tool calls", "file search tool calls", "code interpreter sessions")
_DIRECTION_WEIGHT = {"input": 35, "output": 55, "cached input": 10}
#: Per-mille spend by weekday, Monday first: weekends are quieter.
_WEEKDAY = (1040, 1080, 1100, 1060, 980, 560, 480)
_TABLE_MASK = 4095
_ALNUM = string.ascii_letters + string.digits
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class FakeProject:
    """A project as the Projects API lists it, plus its typical spend."""

    id: str
    name: str | None
    created_at: int
    archived_at: int | None
    line_items: tuple[str, ...]
    daily_usd: Decimal  # typical full weekday spend; 0 for projects that never spend

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @property
    def status(self) -> str:
        return "archived" if self.archived else "active"


@dataclass(frozen=True, slots=True)
class _Spender:
    """What it takes to compute one project's cells (project_id None = unattributed spend)."""

    project_id: str | None
    first_day: int  # ordinal of the first day with spend
    stop_day: int | None  # ordinal of the first day without spend (archive day)
    items: tuple[tuple[str, int, int], ...]  # (line_item, base nanodollars, noise key)
    steady: bool  # no weekday rhythm, narrow noise (the spike project)
    sparse_key: int | None  # spends only on about one day in eight when set


def to_nanos(amount: Decimal) -> int:
    """Exact integer nanodollars of an amount; ValueError past 9 decimal places or for NaN/infinity."""
    if not amount.is_finite():
        raise ValueError("amount must be finite")
    scaled = amount.scaleb(9)
    if scaled != scaled.to_integral_value():
        raise ValueError("amount has more than 9 decimal places")
    return int(scaled)


def from_nanos(nanos: int) -> Decimal:
    """Nanodollars back to a USD `Decimal`."""
    return Decimal(nanos).scaleb(-9)


class FakeOrg:
    """Projects and deterministic daily spend of a simulated organization."""

    def __init__(
        self,
        *,
        seed: int,
        clock: Clock,
        projects: list[FakeProject],
        spenders: list[_Spender],
        spike_project_id: str | None,
        noise: tuple[tuple[int, ...], tuple[int, ...]],
    ) -> None:
        self.seed = seed
        self.clock = clock
        self.projects = projects
        self.spike_project_id = spike_project_id
        self.organization_id = "org-" + "".join(random.Random(f"org:{seed}").choices(_ALNUM, k=24))  # noqa: S311 fake data, not secrets
        self._spenders = spenders
        self._by_id = {p.id: p for p in projects}
        self._noise, self._steady_noise = noise
        self._day_keys: dict[int, int] = {}
        self._overrides: dict[int, dict[tuple[str | None, str], int]] = {}
        self._scales: dict[tuple[int, str | None], Decimal] = {}

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
    ) -> FakeOrg:
        """Build an organization; same arguments and same clock day give the same numbers."""
        clock = clock or SystemClock()
        plan = _Plan(seed, clock.now().date(), history_days, line_items_per_project)
        names = plan.names(project_count, spike_project)
        projects = [plan.project(i, name) for i, name in enumerate(names)]
        spike_index = names.index(SPIKE_NAME) if spike_project and SPIKE_NAME in names else None
        if spike_project and spike_index is None and projects:
            spike_index = 0  # too few projects for the named one: the default project spikes
        archived_count = project_count // 10 if archived_count is None else archived_count
        projects = plan.archive(projects, archived_count, keep={0, spike_index})
        spenders = [plan.spender(p, steady=i == spike_index) for i, p in enumerate(projects)]
        if unattributed:
            spenders.append(plan.unattributed())
        spike_id = projects[spike_index].id if spike_index is not None else None
        return cls(
            seed=seed,
            clock=clock,
            projects=projects,
            spenders=spenders,
            spike_project_id=spike_id,
            noise=plan.noise_tables(),
        )

    def project(self, project_id: str) -> FakeProject:
        """The project with this id; KeyError if there is none."""
        return self._by_id[project_id]

    def cells(
        self, day: dt.date, project_ids: Collection[str | None] | None = None, *, include_zero: bool = False
    ) -> list[tuple[str | None, str, int]]:
        """Every (project_id, line_item, nanodollars) of a UTC day as of the clock's now, non-zero ones only
        unless `include_zero` (then zero cells of projects alive that day are kept too)."""
        o = day.toordinal()
        now = self.clock.now()
        out: list[tuple[str | None, str, int]] = []
        if o <= now.date().toordinal():
            partial = now.hour * 3600 + now.minute * 60 + now.second if o == now.date().toordinal() else None
            spenders = self._spenders
            if project_ids is not None:
                spenders = [s for s in spenders if s.project_id in project_ids]
            self._day_cells(spenders, o, partial, include_zero, out)
        extra = self._overrides.get(o)
        if extra:
            out = _apply_overrides(out, dict(extra), project_ids, include_zero)
        return out

    def _day_cells(
        self,
        spenders: list[_Spender],
        o: int,
        partial: int | None,
        include_zero: bool,
        out: list[tuple[str | None, str, int]],
    ) -> None:
        # The hot loop of a big page (2,000 projects x 180 days): locals only, no calls per cell.
        dk = self._day_key(o)
        rhythm = _WEEKDAY[(o + 6) % 7]
        noise = self._noise
        append = out.append
        for s in spenders:
            if o < s.first_day or (s.stop_day is not None and o >= s.stop_day):
                continue
            if s.sparse_key is not None and (s.sparse_key ^ dk) & 7:
                continue
            if s.steady or self._scales:
                self._special_cells(s, o, dk, partial, include_zero, out)
                continue
            pid = s.project_id
            for line_item, base, key in s.items:
                n = base * rhythm * noise[(key ^ dk) & _TABLE_MASK] // 1_000_000
                if partial is not None:
                    n = n * partial // 86400
                if n or include_zero:
                    append((pid, line_item, n))

    def _special_cells(
        self,
        s: _Spender,
        o: int,
        dk: int,
        partial: int | None,
        include_zero: bool,
        out: list[tuple[str | None, str, int]],
    ) -> None:
        """Cells of the spike project, and of any project while a `scale_today` factor exists."""
        table, rhythm = (self._steady_noise, 1000) if s.steady else (self._noise, _WEEKDAY[(o + 6) % 7])
        mult = SPIKE_FACTOR if s.steady and partial is not None else 1
        factor = self._scales.get((o, s.project_id))
        for line_item, base, key in s.items:
            n = base * rhythm * table[(key ^ dk) & _TABLE_MASK] // 1_000_000 * mult
            if factor is not None:
                n = int((n * factor).to_integral_value(ROUND_HALF_EVEN))
            if partial is not None:
                # The runaway began overnight: by any hour the spike project shows at least half a day at 4x
                # (2x its baseline), so the demo alerts whenever it is started.
                n = n * (max(partial, SPIKE_MIN_PARTIAL) if mult != 1 else partial) // 86400
            if n or include_zero:
                out.append((s.project_id, line_item, n))

    def _day_key(self, o: int) -> int:
        key = self._day_keys.get(o)
        if key is None:
            key = self._day_keys[o] = zlib.crc32(f"{self.seed}:{o}".encode())
        return key

    def line_item_totals(self, day: dt.date) -> dict[tuple[str | None, str], Decimal]:
        """Truth: spend per (project_id, line_item) on a day, non-zero cells only."""
        return {(p, li): from_nanos(n) for p, li, n in self.cells(day)}

    def daily_totals(self, day: dt.date) -> dict[str | None, Decimal]:
        """Truth: spend per project_id (None = unattributed) on a day, projects with non-zero spend only."""
        sums: dict[str | None, int] = {}
        for p, _, n in self.cells(day):
            sums[p] = sums.get(p, 0) + n
        return {p: from_nanos(n) for p, n in sums.items() if n}

    def daily_total(self, day: dt.date, project_id: str | None) -> Decimal:
        """Truth: one project's spend on a day (0 when it spent nothing)."""
        return from_nanos(sum(n for _, _, n in self.cells(day, (project_id,))))

    def set_cost(self, day: dt.date, project_id: str | None, line_item: str, amount: Decimal) -> None:
        """Override one cell with an exact amount (not scaled by the partial day)."""
        self._check_project(project_id)
        self._overrides.setdefault(day.toordinal(), {})[(project_id, line_item)] = to_nanos(amount)

    def scale_today(self, project_id: str | None, factor: Decimal) -> None:
        """A spend jump: multiply the project's cells of the clock's current day by `factor`."""
        self._check_project(project_id)
        if not factor.is_finite():
            raise ValueError("factor must be finite")
        self._scales[(self.clock.now().date().toordinal(), project_id)] = factor

    def _check_project(self, project_id: str | None) -> None:
        if project_id is not None and project_id not in self._by_id:
            raise ValueError("unknown project_id")


def _apply_overrides(
    cells: list[tuple[str | None, str, int]],
    overrides: dict[tuple[str | None, str], int],
    project_ids: Collection[str | None] | None,
    include_zero: bool,
) -> list[tuple[str | None, str, int]]:
    out: list[tuple[str | None, str, int]] = []
    for p, li, n in cells:
        value = overrides.pop((p, li), n)
        if value or include_zero:
            out.append((p, li, value))
    for (p, li), value in overrides.items():
        if value and (project_ids is None or p in project_ids):
            out.append((p, li, value))
    return out


def _team_name(i: int) -> str:
    base = TEAM_NAMES[i % len(TEAM_NAMES)]
    return base if i < len(TEAM_NAMES) else f"{base} {i // len(TEAM_NAMES) + 1}"


class _Plan:
    """Generation-time choices; a seeded `random.Random` is fine here (O(projects), not O(cells))."""

    def __init__(self, seed: int, today: dt.date, history_days: int, items_per_project: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 deterministic fake data, not secrets
        self.seed = seed
        self.today = today
        self.history_start = today - history_days * _DAY
        self.items_per_project = items_per_project

    def names(self, count: int, spike: bool) -> list[str | None]:
        fixed: list[str | None] = [DEFAULT_NAME]
        if spike and count >= len(AWKWARD_NAMES) + 2:
            fixed.append(SPIKE_NAME)
        fixed.extend(AWKWARD_NAMES)
        teams = [_team_name(i) for i in range(max(0, count - len(fixed)))]
        return (fixed + teams)[:count]

    def project(self, index: int, name: str | None) -> FakeProject:
        rng = self.rng
        pid = "proj_" + "".join(rng.choices(_ALNUM, k=24))
        old = index < len(AWKWARD_NAMES) + 2  # the fixed projects predate the history window
        days_back = rng.randint(410, 700) if old else rng.randint(14, 500)
        created = day_start(self.today - days_back * _DAY) + rng.randint(0, 86399)
        spends = old or rng.random() > 0.1
        usd = Decimal(f"{10 ** rng.uniform(-1.3, 2.5):.4f}") if spends else Decimal(0)
        if name == SPIKE_NAME:
            usd = Decimal(20)
        return FakeProject(pid, name, created, None, self.line_items(), usd)

    def line_items(self) -> tuple[str, ...]:
        model = self.rng.choice(MODELS)
        pool = [f"{model}, {d}" for d in DIRECTIONS]
        others = [f"{m}, {d}" for m in MODELS if m != model for d in DIRECTIONS] + list(TOOL_ITEMS)
        self.rng.shuffle(others)
        return tuple((pool + others)[: self.items_per_project])

    def archive(self, projects: list[FakeProject], count: int, keep: set[int | None]) -> list[FakeProject]:
        candidates = [i for i in range(len(projects)) if i not in keep]
        chosen = set(self.rng.sample(candidates, min(count, len(candidates))))
        out = []
        for i, p in enumerate(projects):
            if i in chosen:
                lo = p.created_at + 7 * 86400
                hi = max(lo, day_start(self.today - _DAY))
                out.append(dataclasses.replace(p, archived_at=self.rng.randint(lo, hi)))
            else:
                out.append(p)
        return out

    def spender(self, p: FakeProject, *, steady: bool) -> _Spender:
        first = max(dt.datetime.fromtimestamp(p.created_at, dt.UTC).date(), self.history_start)
        stop = dt.datetime.fromtimestamp(p.archived_at, dt.UTC).date() if p.archived_at else None
        items = self._items(p.line_items, p.daily_usd)
        return _Spender(p.id, first.toordinal(), stop.toordinal() if stop else None, items, steady, None)

    def unattributed(self) -> _Spender:
        items = self._items(("gpt-4o-mini-2024-07-18, input", "web search tool calls"), Decimal("0.35"))
        key = self.rng.getrandbits(32)
        return _Spender(None, self.history_start.toordinal(), None, items, False, key)

    def _items(self, line_items: tuple[str, ...], usd: Decimal) -> tuple[tuple[str, int, int], ...]:
        weights = [_DIRECTION_WEIGHT.get(li.rsplit(", ", 1)[-1], 20) for li in line_items]
        total = sum(weights) or 1
        nanos = to_nanos(usd)
        return tuple(
            (li, nanos * w // total + self.rng.randint(0, 999), self.rng.getrandbits(32))
            for li, w in zip(line_items, weights, strict=True)
            if nanos
        )

    def noise_tables(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        rng = random.Random(self.seed * 7919 + 1)  # noqa: S311 deterministic fake data
        noise = tuple(0 if rng.random() < 0.04 else rng.randint(600, 1400) for _ in range(_TABLE_MASK + 1))
        steady = tuple(rng.randint(920, 1080) for _ in range(_TABLE_MASK + 1))
        return noise, steady
