"""The daily digest (opt-in): a day's spend in one message, largest projects and biggest movers (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from openai_cost_exporter.core.money import ZERO as _ZERO


@dataclass(frozen=True, slots=True)
class DigestRow:
    """One project's spend on the digest day, against its baseline."""

    project_id: str
    name: str
    amount: Decimal
    baseline: Decimal

    @property
    def change(self) -> Decimal:
        return self.amount - self.baseline


@dataclass(frozen=True, slots=True)
class Digest:
    """A day's spend in one message: total, every project (largest first), the biggest movers."""

    day: dt.date
    total: Decimal
    baseline_total: Decimal
    rows: tuple[DigestRow, ...]
    movers: tuple[DigestRow, ...]


def build_digest(
    day: dt.date,
    totals: dict[str, Decimal],
    baselines: dict[str, Decimal],
    names: dict[str, str],
    top: int = 5,
) -> Digest:
    """Summarize `day`: projects with spend or a baseline, sorted by amount; top movers by |change|."""
    rows = [
        DigestRow(pid, names.get(pid, pid), totals.get(pid, _ZERO), baselines.get(pid, _ZERO))
        for pid in totals.keys() | baselines.keys()
    ]
    rows.sort(key=lambda r: (-r.amount, r.name, r.project_id))
    moved = [r for r in rows if r.change != _ZERO]
    moved.sort(key=lambda r: (-abs(r.change), r.name, r.project_id))
    return Digest(
        day=day,
        total=sum((r.amount for r in rows), _ZERO),
        baseline_total=sum((r.baseline for r in rows), _ZERO),
        rows=tuple(rows),
        movers=tuple(moved[: max(top, 0)]),
    )
