"""What a message says beyond its figures, in words, for every notifier alike (Slack's blocks and the log line
render the same lines): a runaway's models and daily equivalent, and how far and how soon a hard limit is.

The deciding side (rules/decision.py) writes no text; the alert path hands these lines to the outbox record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from openai_cost_exporter.core.models import ZERO, next_month
from openai_cost_exporter.core.money import usd
from openai_cost_exporter.rules import ORGANIZATION, Alert, LimitFigures
from openai_cost_exporter.rules.spend_limit import days_to_limit

#: From this many days on, the days left are shown without a decimal.
WHOLE_DAYS = 10


def runaway_details(alert: Alert, models: Sequence[tuple[str, Decimal]]) -> list[tuple[str, str]]:
    """What a runaway message says beyond the figures: the models driving it, a day at this rate, and that all
    of it is an estimate from token usage."""
    if alert.rule != "runaway" or alert.level != "firing":
        return []
    lines = [("A day at this rate", f"{usd(alert.value * 24)} (estimate)")]
    if models:
        lines.append(("Driven by", ", ".join(f"{model} {usd(rate)}/h" for model, rate in models)))
    lines.append(("Estimate", "from token usage priced with genai-prices; billed costs follow hours later"))
    return lines


def limit_details(figures: LimitFigures, data_time: dt.datetime) -> list[tuple[str, str]]:
    """What a spend limit message says beyond the figures: how far, how soon, and what happens there."""
    whose = "the organization's" if figures.subject_id == ORGANIZATION else "this project's"
    lines = []
    if figures.limit > ZERO:
        lines.append(("Spent of the limit", f"{figures.month_to_date / figures.limit:.0%} this month"))
    days = days_to_limit(figures)
    if figures.enforcing:
        when = "now: OpenAI is enforcing it"
    elif days is not None and days <= ZERO:
        when = "reached"
    elif days is None:
        when = "no spend in the last 7 closed days to project from"
    else:
        month_end = dt.datetime.combine(next_month(data_time.date()), dt.time(), dt.UTC)
        left = (month_end - data_time) / dt.timedelta(days=1)
        if days >= Decimal(left) and figures.forecast > figures.limit:  # the forecast counts all of today
            when = f"by the end of the month at {usd(figures.pace)} a day (forecast {usd(figures.forecast)})"
        elif days >= Decimal(left):  # the limit is monthly: it starts again before this pace reaches it
            when = f"not this month at {usd(figures.pace)} a day (the month to date starts again on {month_end:%b} 1)"
        else:
            around = data_time + dt.timedelta(days=float(days))
            when = f"{_in_about(days)} at {usd(figures.pace)} a day (around {around:%b} {around.day})"
    lines.append(("Limit reached", when))
    lines.append(
        ("At the limit", f"OpenAI stops serving {whose} API requests until the month ends or someone raises the limit")
    )
    return lines


def _in_about(days: Decimal) -> str:
    """`in about 5 hours`, `in about 3.8 days`, `in about 12 days`."""
    if days < 1:
        hours = max(1, round(days * 24))
        return f"in about {hours} hour{'' if hours == 1 else 's'}"
    if days.quantize(Decimal("0.1")) < WHOLE_DAYS:  # 9.96 is "10 days", not "10.0 days"
        return f"in about {days:.1f} days"
    return f"in about {days:.0f} days"
