"""The runaway rule (pure): a project's estimated spend rate of the recent minutes against its usual for them.

runaway: rate > runaway_ratio x usual AND rate >= runaway_min_usd (per hour). `usual` is the median, over the
history window, of the same minutes of the clock on each earlier day, so a daily batch peak is not a runaway
(figures/recent.py: the window; figures/estimates.py: the usual).
The figures are estimates from token usage (priced with genai-prices), never billed amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from openai_cost_exporter.core.money import ZERO


@dataclass(frozen=True, slots=True)
class RunawayFigures:
    """What the runaway rule looks at for one project (estimated USD per hour)."""

    subject_id: str
    subject_name: str
    rate: Decimal  # estimated spend rate of the recent window, USD per hour
    usual: Decimal  # median rate of the same minutes on the earlier days of the history window
    models: Sequence[tuple[str, Decimal]] = ()  # models driving the recent window, largest first


def is_runaway(figures: RunawayFigures, ratio: Decimal, min_usd: Decimal) -> bool:
    """rate > ratio x usual and rate >= min_usd (a project with no usual spend runs away over the floor)."""
    return figures.rate > ratio * figures.usual and figures.rate >= min_usd and figures.rate > ZERO


def median(values: Sequence[Decimal]) -> Decimal:
    """The median (the mean of the middle two for an even count); 0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return ZERO
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
