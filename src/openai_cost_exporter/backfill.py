"""`backfill`: bring past days into the ledger, then push those not yet pushed.

It uses the cycle's two paths (sources.py, history.py): the pages stream into the ledger, so memory does not
grow with the number of days; the push waits for the last page because a project must get a sample on every
day of the window (0 where it spent nothing), and which projects spend is only known once every page was read.
A day already pushed, and unchanged since, is not pushed again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from openai_cost_exporter.history import push_closed_days
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.models import days_between
from openai_cost_exporter.openai_client import costs_page_days
from openai_cost_exporter.push import Pusher
from openai_cost_exporter.sources import CostSource, Window, fetch_into_ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackfillResult:
    days: int
    projects: int  # projects with cost rows in the backfilled days (unattributed included)
    samples: int
    duration: float


def backfill(
    source: CostSource,
    ledger: Ledger,
    pusher: Pusher | None,
    *,
    start: dt.date,
    end: dt.date,
    now: dt.datetime,
    line_items: bool,
) -> BackfillResult:
    """Fetch [start, end) into the ledger, then push every day of it never pushed (or changed since)."""
    started = time.perf_counter()
    window = Window(start, end, line_items, costs_page_days(line_items))
    fetched = fetch_into_ledger(source, ledger, window, now, refresh_names=True)
    if fetched.names_error is not None:
        raise fetched.names_error
    samples = 0
    if pusher is not None:
        # A day without any spend changed nothing, yet it needs its zeros once: no holes in the graph.
        pushed = ledger.pushed_days(start, end)
        ledger.mark_unpushed(day for day in days_between(start, end) if day not in pushed)
        names = {pid: project.name for pid, project in ledger.projects().items()}
        samples = push_closed_days(
            pusher, ledger, before=end, names=names, also_projects=fetched.spenders, line_items=line_items
        ).samples
    return BackfillResult(
        days=(end - start).days,
        projects=len(fetched.spenders),
        samples=samples,
        duration=time.perf_counter() - started,
    )
