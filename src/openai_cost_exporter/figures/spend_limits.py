"""The hard spend limits beside the snapshot: the rule's figures for each subject (what the message says of them is
notify/text.py's).

The limits themselves are listed in the background (directory.py); the rule is rules/spend_limit.py.
"""

from __future__ import annotations

from openai_cost_exporter.core.models import ZERO
from openai_cost_exporter.figures.snapshot import CostSnapshot
from openai_cost_exporter.rules import ORGANIZATION, LimitFigures


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
