"""Generation of the simulated organization: its projects, line items, base levels and noise tables.

The seeded `random.Random` is consumed in a fixed order (projects, archiving, spenders); additions that must
not change the existing numbers (relabelled line items, named rhythm projects) draw from generators of their
own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import string
from dataclasses import dataclass
from decimal import Decimal

from openai_cost_exporter.core.models import day_start
from openai_cost_exporter.fake.shapes import DayShape
from openai_cost_exporter.fake.traffic import FLAT, Profile, profile_for

SPIKE_NAME = "Search Reranker"
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
_ALNUM = string.ascii_letters + string.digits
_DAY = dt.timedelta(days=1)
_IDLE_SHARE = 0.1  # of the generated team projects spend nothing at all
_QUIET_DAY_SHARE = 0.04  # of the noise table's days are zero-spend days
_FIXED = len(AWKWARD_NAMES) + 2  # the default project, the spike project and the awkward names come first


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
class Spender:
    """What it takes to compute one project's cells (project_id None = unattributed spend)."""

    project_id: str | None
    first_day: int  # ordinal of the first day with spend
    stop_day: int | None  # ordinal of the first day without spend (archive day)
    items: tuple[tuple[str, int, int], ...]  # (line_item, base nanodollars, noise key)
    steady: bool  # no weekday rhythm, narrow noise
    sparse_key: int | None  # spends only on about one day in eight when set
    profile: Profile = FLAT
    spike: bool = False  # today at SPIKE_FACTOR, billed without lag (fake/org.py)
    shape: DayShape | None = None  # a calendar shape (fake/shapes.py); only the corpus's projects have one


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


def _team_name(i: int) -> str:
    base = TEAM_NAMES[i % len(TEAM_NAMES)]
    return base if i < len(TEAM_NAMES) else f"{base} {i // len(TEAM_NAMES) + 1}"


def relabel(project: FakeProject, spender: Spender, names: dict[str, str]) -> tuple[FakeProject, Spender]:
    """Rename line items (old name -> new) keeping their amounts: the org's numbers stay the same."""
    items = tuple(names.get(li, li) for li in project.line_items)
    cells = tuple((names.get(li, li), base, key) for li, base, key in spender.items)
    return dataclasses.replace(project, line_items=items), dataclasses.replace(spender, items=cells)


def relabel_candidates(projects: list[FakeProject], spike_index: int | None) -> list[int]:
    """Team projects that spend and stay active, cheapest first: where the embeddings and unpriced models go."""
    indices = [
        i for i, p in enumerate(projects) if i >= _FIXED and i != spike_index and not p.archived and p.daily_usd > 0
    ]
    return sorted(indices, key=lambda i: projects[i].daily_usd)


class Plan:
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
        old = index < _FIXED  # the fixed projects predate the history window
        days_back = rng.randint(410, 700) if old else rng.randint(14, 500)
        created = day_start(self.today - days_back * _DAY) + rng.randint(0, 86399)
        spends = old or rng.random() > _IDLE_SHARE
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

    def spender(self, p: FakeProject, *, spike: bool) -> Spender:
        first = max(dt.datetime.fromtimestamp(p.created_at, dt.UTC).date(), self.history_start)
        stop = dt.datetime.fromtimestamp(p.archived_at, dt.UTC).date() if p.archived_at else None
        items = self._items(self.rng, p.line_items, p.daily_usd)
        profile = FLAT if spike else profile_for(p.id)
        stop_day = stop.toordinal() if stop else None
        return Spender(p.id, first.toordinal(), stop_day, items, spike, None, profile, spike)

    def unattributed(self) -> Spender:
        items = self._items(self.rng, ("gpt-4o-mini-2024-07-18, input", "web search tool calls"), Decimal("0.35"))
        key = self.rng.getrandbits(32)
        return Spender(None, self.history_start.toordinal(), None, items, False, key)

    def named(self, name: str, model: str, usd: Decimal, profile: Profile) -> tuple[FakeProject, Spender]:
        """A steady project added by name (rhythm and runaway projects), from a generator of its own."""
        rng = random.Random(f"named:{self.seed}:{name}")  # noqa: S311 deterministic fake data
        pid = "proj_" + "".join(rng.choices(_ALNUM, k=24))
        created = day_start(self.today - rng.randint(410, 700) * _DAY) + rng.randint(0, 86399)
        project = FakeProject(pid, name, created, None, tuple(f"{model}, {d}" for d in DIRECTIONS), usd)
        items = self._items(rng, project.line_items, usd)
        return project, Spender(pid, self.history_start.toordinal(), None, items, True, None, profile)

    @staticmethod
    def _items(rng: random.Random, line_items: tuple[str, ...], usd: Decimal) -> tuple[tuple[str, int, int], ...]:
        weights = [_DIRECTION_WEIGHT.get(li.rsplit(", ", 1)[-1], 20) for li in line_items]
        total = sum(weights) or 1
        nanos = to_nanos(usd)
        return tuple(
            (li, nanos * w // total + rng.randint(0, 999), rng.getrandbits(32))
            for li, w in zip(line_items, weights, strict=True)
            if nanos
        )

    def noise_tables(self, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        rng = random.Random(self.seed * 7919 + 1)  # noqa: S311 deterministic fake data
        noise = tuple(0 if rng.random() < _QUIET_DAY_SHARE else rng.randint(600, 1400) for _ in range(size))
        steady = tuple(rng.randint(920, 1080) for _ in range(size))
        return noise, steady
