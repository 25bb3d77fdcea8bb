"""What the alert messages of one cycle need beyond the snapshot, gathered once by the cycle.

Line items: from the snapshot when the cycle collects them, otherwise one costs request for today grouped by
line item, only for the projects with a message due (the whole organization when it has one). Digest: the
ledger's totals of yesterday and of its baseline window. Nothing is asked when no message is due.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from openai_cost_exporter.errors import OpenAIError
from openai_cost_exporter.estimates import Estimates
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.models import DAY
from openai_cost_exporter.rules import ORGANIZATION, Alert
from openai_cost_exporter.snapshot import CostSnapshot, DayTotals
from openai_cost_exporter.sources import CostSource

log = logging.getLogger(__name__)

LineItems = Mapping[tuple[str, str], Decimal]  # (project_id, line_item) -> today's amount


@dataclass(frozen=True, slots=True)
class MessageInputs:
    line_items: LineItems | None = None  # None: not collected and not available
    digest_totals: DayTotals | None = None  # yesterday and its baseline window, when a digest is due
    models: Mapping[str, Sequence[tuple[str, Decimal]]] = field(default_factory=dict)  # runaway: top models


def gather_inputs(
    due: Sequence[Alert],
    snapshot: CostSnapshot | None,
    *,
    day: dt.date,
    source: CostSource,
    ledger: Ledger,
    baseline_days: int,
    digest: bool,
    estimates: Estimates | None = None,
) -> MessageInputs:
    """At most one request (today's line items of the subjects due) and one ledger read (the digest)."""
    line_items = snapshot.line_items if snapshot is not None else None
    if line_items is None and due:
        line_items = _fetch_line_items(source, day, {alert.subject_id for alert in due})
    totals = None
    if digest:
        yesterday = day - DAY
        totals = ledger.project_totals(yesterday - dt.timedelta(days=baseline_days), day)
    models = {} if estimates is None else {a.subject_id: estimates.models.get(a.subject_id, []) for a in due}
    return MessageInputs(line_items=line_items, digest_totals=totals, models=models)


def _fetch_line_items(source: CostSource, day: dt.date, subjects: set[str]) -> LineItems | None:
    projects = () if ORGANIZATION in subjects else tuple(sorted(subjects))
    try:
        return {
            (row.project_id, row.line_item or "unknown"): row.amount_usd
            for page in source.iter_costs(day, day + DAY, line_items=True, limit=1, project_ids=projects)
            for row in page.rows
        }
    except OpenAIError as exc:  # a message without line items beats no message
        log.warning("could not fetch line items for the alert messages: %s", exc)
        return None
