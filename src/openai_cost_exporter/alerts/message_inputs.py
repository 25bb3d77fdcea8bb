"""What the alert messages of one cycle need beyond the snapshot, gathered once by the cycle.

Line items: from the snapshot when the cycle collects them, otherwise one costs request for today grouped by
line item, only for the projects with a message due (the whole organization when it has one). Digest: the
ledger's totals of yesterday and of its baseline window. Top API keys (with `--api-keys`): from the ledger's
billed figures by key (today; the month for a spend limit), named from the key listings (a project never listed
is listed now, waited for a few seconds at most); for a runaway, one usage request per endpoint grouped by key
for the runaway projects, priced (an estimate, like the rule). Nothing is asked when no message is due.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from openai_cost_exporter.core.errors import OpenAIError
from openai_cost_exporter.core.models import DAY, ZERO, ApiKey
from openai_cost_exporter.figures.api_keys import top_keys
from openai_cost_exporter.figures.estimates import Estimates
from openai_cost_exporter.figures.snapshot import CostSnapshot, DayTotals
from openai_cost_exporter.rules import ORGANIZATION, Alert
from openai_cost_exporter.sources.ports import CostSource
from openai_cost_exporter.store.ledger import Ledger

log = logging.getLogger(__name__)

LineItems = Mapping[tuple[str, str], Decimal]  # (project_id, line_item) -> today's amount
KeyLines = Mapping[str, Sequence[tuple[str, str, Decimal]]]  # subject -> (key name, owner, amount), largest first
TOP_KEYS = 3
#: How long a message waits for the key names of a project never listed before (they are asked first).
KEY_NAMES_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class KeyFigures:
    """Where the top keys of a message come from (the cycle's directory stage, and its usage stage)."""

    # Every known key by id, once the keys of these projects were listed (or the wait ran out).
    names: Callable[[Collection[str]], Mapping[str, ApiKey]]
    # Estimated spend of the last 60 minutes per project, per key; None without usage.
    rates: Callable[[dt.datetime, Sequence[str]], Mapping[str, Mapping[str, Decimal]]] | None = None


@dataclass(frozen=True, slots=True)
class MessageInputs:
    line_items: LineItems | None = None  # None: not collected and not available
    digest_totals: DayTotals | None = None  # yesterday and its baseline window, when a digest is due
    models: Mapping[str, Sequence[tuple[str, Decimal]]] = field(default_factory=dict)  # runaway: top models
    keys: KeyLines = field(default_factory=dict)  # subject -> top API keys (name, owner, amount)


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
    keys: KeyFigures | None = None,
    now: dt.datetime | None = None,
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
    top = gather_keys(due, ledger, keys, now) if keys is not None and now is not None else {}
    return MessageInputs(line_items=line_items, digest_totals=totals, models=models, keys=top)


def gather_keys(due: Sequence[Alert], ledger: Ledger, figures: KeyFigures, now: dt.datetime) -> KeyLines:
    """The top keys of each project with a message due (none for the organization)."""
    alerts = [a for a in due if a.subject_id != ORGANIZATION and a.level != "resolved"]
    if not alerts:
        return {}
    names = figures.names({a.subject_id for a in alerts})
    day = now.date()
    today = ledger.key_totals(day, day + DAY).get(day, {})
    month: dict[tuple[str, str], Decimal] = {}
    if any(a.rule == "spend_limit" for a in alerts):
        for amounts in ledger.key_totals(day.replace(day=1), day + DAY).values():
            for key, amount in amounts.items():
                month[key] = month.get(key, ZERO) + amount
    runaways = sorted({a.subject_id for a in alerts if a.rule == "runaway"})
    rates: Mapping[str, Mapping[str, Decimal]] = {}
    if runaways and figures.rates is not None:
        try:
            rates = figures.rates(now, runaways)
        except OpenAIError as exc:  # a message without its keys beats no message
            log.warning("could not fetch the usage by API key for the runaway messages: %s", exc)
    lines: dict[str, list[tuple[str, str, Decimal]]] = {}
    for alert in alerts:
        pid = alert.subject_id
        if alert.rule == "runaway":
            amounts = {(pid, key_id): rate for key_id, rate in rates.get(pid, {}).items()}
        else:
            amounts = month if alert.rule == "spend_limit" else today
        lines[pid] = top_keys(pid, amounts, names, TOP_KEYS)
    return lines


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
