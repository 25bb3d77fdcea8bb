"""The hard spend limit rule (pure): month-to-date spend against OpenAI's own monthly limit.

A hard limit is not a budget: when the month's spend reaches it, OpenAI stops serving the organization or the
project until the month ends or someone raises it (openai-admin-api.md §9). So the rule warns ahead:

- exceeded: month to date >= the limit, or OpenAI says it is enforcing it (critical)
- firing:   month to date > share x the limit (default 80%; critical)
- forecast: the month-end forecast at the recent pace crosses the limit (warning)

and the message says how many days are left at the recent pace (`days_to_limit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from openai_cost_exporter.core.money import ZERO

LimitLevel = Literal["exceeded", "firing", "forecast"]


@dataclass(frozen=True, slots=True)
class LimitFigures:
    """What the spend limit rule looks at for one subject (a project, or the organization)."""

    subject_id: str
    subject_name: str
    month_to_date: Decimal
    forecast: Decimal  # month to date plus the recent pace for each day left (baselines.pace_forecast)
    pace: Decimal  # USD per day: the mean of the last 7 closed days
    limit: Decimal  # USD per month (the API's cents / 100)
    enforcing: bool = False  # OpenAI's `enforcement.status` is "enforcing": it stopped serving


def limit_level(figures: LimitFigures, share: Decimal) -> LimitLevel | None:
    """How close the subject is to its hard limit, or None when it is far from it."""
    if figures.enforcing or figures.month_to_date >= figures.limit:
        return "exceeded"
    if figures.month_to_date > share * figures.limit:
        return "firing"
    if figures.forecast > figures.limit:
        return "forecast"
    return None


def days_to_limit(figures: LimitFigures) -> Decimal | None:
    """Days until the month to date reaches the limit at the recent pace; None without a pace, 0 once there."""
    left = figures.limit - figures.month_to_date
    if left <= ZERO or figures.enforcing:
        return ZERO
    if figures.pace <= ZERO:
        return None
    return left / figures.pace
