"""The one fetch path: cost pages into the ledger, names alongside, a names failure apart from the costs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.backfill import backfill
from openai_cost_exporter.core.errors import APIUnavailable
from openai_cost_exporter.core.models import CostPage, CostRow, Project
from openai_cost_exporter.ingest.costs import Window, fetch_into_ledger
from openai_cost_exporter.sources.openai.paging import costs_page_days
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state

DAY = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)


class Source:
    """A CostSource of one page of one day; its names listing fails when `names_down`."""

    def __init__(self, *, names_down: bool) -> None:
        self.names_down = names_down
        self.pages = 0

    def page_days(self, *, line_items: bool, api_keys: bool = False) -> int:
        """Days per costs page, as the OpenAI client pages."""
        return costs_page_days(line_items, api_keys)

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
        self.pages += 1
        yield CostPage((DAY,), (CostRow(DAY, "proj_a", None, Decimal("1.25")),), rejected=2)

    def list_projects(self) -> list[Project]:
        if self.names_down:
            raise APIUnavailable("GET /organization/projects failed after 3 attempts: HTTP 503")
        return [Project("proj_a", "Alpha")]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    conn = open_state(tmp_path / "state.sqlite3")
    yield Ledger(conn)
    conn.close()


def test_a_names_failure_is_returned_and_the_costs_still_count(ledger: Ledger) -> None:
    """Costs are stored even when the names listing fails; the failure comes back for the caller to report."""
    fetched = fetch_into_ledger(
        Source(names_down=True), ledger, Window(DAY, DAY + dt.timedelta(days=1), False, 7), NOW, refresh_names=True
    )
    assert isinstance(fetched.names_error, APIUnavailable)
    assert fetched.rejected == 2  # the pages' rejected rows add up, for the self-metric
    assert ledger.project_totals(DAY, DAY + dt.timedelta(days=1)) == {DAY: {"proj_a": Decimal("1.25")}}
    assert ledger.projects() == {}


def test_backfill_reports_a_names_failure(ledger: Ledger) -> None:
    """`backfill` fails on a names failure (it is a command a person watches), the costs already stored."""
    with pytest.raises(APIUnavailable):
        backfill(Source(names_down=True), ledger, None, start=DAY, end=NOW.date(), now=NOW, line_items=False)
    assert ledger.project_totals(DAY, DAY + dt.timedelta(days=1))[DAY]["proj_a"] == Decimal("1.25")
    result = backfill(Source(names_down=False), ledger, None, start=DAY, end=NOW.date(), now=NOW, line_items=False)
    assert result.projects == 1 and ledger.projects()["proj_a"].name == "Alpha"


class Pushes:
    """Stands in for the push target: counts the pushes it accepts."""

    target = "recording"

    def __init__(self) -> None:
        self.count = 0

    def push(self, registry: object) -> int:
        self.count += 1
        return 0


def test_a_second_backfill_pushes_nothing_already_pushed(ledger: Ledger) -> None:
    """`backfill` over days already pushed and unchanged pushes nothing (no duplicates without dedup)."""
    pusher = Pushes()
    start = NOW.date() - dt.timedelta(days=6)
    first = backfill(Source(names_down=False), ledger, pusher, start=start, end=NOW.date(), now=NOW, line_items=False)  # type: ignore[arg-type]
    assert first.samples > 0 and pusher.count > 0
    pusher.count = 0
    second = backfill(Source(names_down=False), ledger, pusher, start=start, end=NOW.date(), now=NOW, line_items=False)  # type: ignore[arg-type]
    assert second.samples == 0 and pusher.count == 0


def test_a_new_push_target_gets_every_day_and_repush_sends_them_again(ledger: Ledger) -> None:
    """Days pushed to one target are pushed again to a new one (a new VictoriaMetrics gets its history), and
    `repush` pushes days already pushed to the same target."""
    start, end = NOW.date() - dt.timedelta(days=6), NOW.date()
    first = Pushes()
    done = backfill(Source(names_down=False), ledger, first, start=start, end=end, now=NOW, line_items=False)  # type: ignore[arg-type]
    second = Pushes()
    second.target = "another VictoriaMetrics"
    moved = backfill(Source(names_down=False), ledger, second, start=start, end=end, now=NOW, line_items=False)  # type: ignore[arg-type]
    assert moved.samples == done.samples > 0 and second.count == first.count
    source = Source(names_down=False)
    again = backfill(source, ledger, first, start=start, end=end, now=NOW, line_items=False, repush=True)  # type: ignore[arg-type]
    assert again.samples == done.samples
