"""The source ports: what the cycle, `backfill` and `report` need of a source of costs.

The OpenAI Admin API client (sources/openai/client.py) is the one implementation today; a second provider would
implement the same Protocol. Bringing a source into the ledger is ingest/costs.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Protocol

from openai_cost_exporter.core.models import CostPage, Project


class CostSource(Protocol):
    """Daily billed costs and project names of one organization."""

    def iter_costs(
        self,
        start: dt.date,
        end: dt.date,
        *,
        line_items: bool,
        limit: int,
        project_ids: Sequence[str] = (),
        api_keys: bool = False,
    ) -> Iterator[CostPage]:
        """Daily costs of the UTC days [start, end), one page at a time (only `project_ids` when given; by API
        key too with `api_keys`, where the source has them)."""
        ...

    def page_days(self, *, line_items: bool, api_keys: bool = False) -> int:
        """Daily buckets per costs page that keep a page of this source a bounded size (the source owns its
        paging: the cycle only asks)."""
        ...

    def list_projects(self) -> list[Project]:
        """Every project, archived ones included."""
        ...
