"""The hard spend limits beside the snapshot: the rule's figures for each subject, and what its message says.

The limits themselves are listed in the background (directory.py); the rule is rules/spend_limit.py.
"""

from __future__ import annotations

import datetime as dt

from openai_cost_exporter.models import ZERO
from openai_cost_exporter.money import usd
from openai_cost_exporter.rules import ORGANIZATION, LimitFigures
from openai_cost_exporter.rules.spend_limit import days_to_limit
from openai_cost_exporter.snapshot import CostSnapshot

#: From this many days on, the days left are shown without a decimal.
WHOLE_DAYS = 10


def limit_figures(snapshot: CostSnapshot) -> list[LimitFigures]:
    """The spend limit figures of every subject with a hard limit (projects first, then the organization)."""
    figures = []
    for pid, limit in sorted((pid, limit) for pid, limit in snapshot.spend_limits.items() if pid is not None):
        mtd = snapshot.month_to_date.get(pid, ZERO)
        figures.append(
            LimitFigures(
                subject_id=pid,
                subject_name=snapshot.name(pid),
                month_to_date=mtd,
                forecast=snapshot.forecast.get(pid, mtd),
                pace=snapshot.pace.get(pid, ZERO),
                limit=limit.threshold_usd,
                enforcing=limit.status == "enforcing",
            )
        )
    organization = snapshot.spend_limits.get(None)
    if organization is not None:
        figures.append(
            LimitFigures(
                subject_id=ORGANIZATION,
                subject_name="Organization",
                month_to_date=snapshot.total(snapshot.month_to_date),
                forecast=snapshot.total(snapshot.forecast),
                pace=snapshot.total(snapshot.pace),
                limit=organization.threshold_usd,
                enforcing=organization.status == "enforcing",
            )
        )
    return figures


def limit_details(figures: LimitFigures, data_time: dt.datetime) -> list[tuple[str, str]]:
    """What a spend limit message says beyond the figures: how far, how soon, and what happens there."""
    share = figures.month_to_date / figures.limit if figures.limit > ZERO else None
    spent = usd(figures.month_to_date) + (f" ({share:.0%} of the limit)" if share is not None else "")
    whose = "the organization's" if figures.subject_id == ORGANIZATION else "this project's"
    days = days_to_limit(figures)
    if figures.enforcing:
        when = "OpenAI is enforcing the limit now"
    elif days is not None and days <= ZERO:
        when = "reached"
    elif days is None:
        when = "no spend in the last 7 closed days to project from"
    else:
        shown = f"{days:.1f}" if days < WHOLE_DAYS else f"{days:.0f}"
        around = (data_time + dt.timedelta(days=float(days))).date()
        when = f"in about {shown} days at {usd(figures.pace)} a day (around {around:%b} {around.day})"
    return [
        ("Spent this month", spent),
        ("Limit reached", when),
        (
            "At the limit",
            f"OpenAI stops serving {whose} API requests until the month ends or someone raises the limit",
        ),
    ]
