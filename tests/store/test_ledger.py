"""The cost ledger: replacing days, revisions, exact sums, retention, projects and push marks."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
from collections.abc import Iterator
from decimal import Decimal

import pytest

from openai_cost_exporter.core.models import UNATTRIBUTED, CostRow, Project
from openai_cost_exporter.core.money import exact_sum
from openai_cost_exporter.export.push import push_target
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state

D1 = dt.date(2026, 11, 1)
D2 = dt.date(2026, 11, 2)
D3 = dt.date(2026, 11, 3)
AT = dt.datetime(2026, 11, 4, 6, tzinfo=dt.UTC)
LATER = dt.datetime(2026, 11, 5, 6, tzinfo=dt.UTC)
BIG = "1.234567890123456789012345678901234567891"  # 40 significant digits: beyond Decimal's default 28


def row(day: dt.date, project: str, amount: str, item: str | None = "gpt-4o, input") -> CostRow:
    return CostRow(day=day, project_id=project, line_item=item, amount_usd=Decimal(amount))


@pytest.fixture
def conn(tmp_path: pathlib.Path) -> Iterator[sqlite3.Connection]:
    connection = open_state(tmp_path / "state.sqlite3")
    yield connection
    connection.close()


@pytest.fixture
def ledger(conn: sqlite3.Connection) -> Ledger:
    return Ledger(conn)


BASE = [
    row(D1, "proj_a", "1.50"),
    row(D1, "proj_a", "0.25", "gpt-4o, output"),
    row(D1, "proj_b", "3"),
]


@pytest.mark.parametrize(
    ("second", "changed"),
    [
        (BASE, set()),
        ([row(D1, "proj_a", "1.5000"), *BASE[1:]], set()),  # same values, other spelling
        ([*BASE, row(D1, "proj_c", "0E-6176")], set()),  # a zero row adds nothing
        ([row(D1, "proj_a", "1.51"), *BASE[1:]], {D1}),  # changed amount
        (BASE[:2], {D1}),  # vanished project
        ([*BASE, row(D1, "proj_b", "0.01", "web search")], {D1}),  # new line item
        ([row(D1, "proj_a", "1.75", "gpt-4o, input"), BASE[2]], {D1}),  # same total, line items moved
        ([*BASE, row(D1, UNATTRIBUTED, "2")], {D1}),  # new project
        ([], {D1}),  # the day has no spend any more
    ],
)
def test_replace_days_reports_revisions(ledger: Ledger, second: list[CostRow], changed: set[dt.date]) -> None:
    """A re-fetch returns the days whose line items or project totals changed, and nothing when unchanged."""
    assert ledger.replace_days([D1], BASE, AT) == {D1}
    assert ledger.replace_days([D1], second, LATER) == changed


def test_replace_days_replaces_all_rows_of_the_days(ledger: Ledger) -> None:
    """Rows of listed days are replaced as a whole; rows of other days stay."""
    ledger.replace_days([D1, D2], [row(D1, "proj_a", "1"), row(D2, "proj_b", "2")], AT)
    ledger.replace_days([D2], [row(D2, "proj_c", "5")], LATER)
    assert ledger.project_totals(D1, D3) == {D1: {"proj_a": Decimal(1)}, D2: {"proj_c": Decimal(5)}}


def test_project_ids_are_those_with_rows_in_the_range(ledger: Ledger) -> None:
    """`project_ids` names every project with a row in [start, end), a zero row too: the keys of the totals."""
    ledger.replace_days([D1, D2, D3], [row(D1, "proj_a", "1"), row(D2, "proj_b", "0"), row(D3, "proj_c", "3")], AT)
    assert ledger.project_ids(D1, D3) == {"proj_a", "proj_b"} == set().union(*ledger.project_totals(D1, D3).values())
    assert ledger.project_ids(D3, D3) == set()


def test_first_fetch_counts_spend_as_change_and_empty_day_not(ledger: Ledger) -> None:
    """A day never stored counts as empty: a first fetch with spend changes it, a first fetch without does not."""
    assert ledger.replace_days([D1, D2], [row(D2, "proj_a", "1")], AT) == {D2}


def test_amounts_are_stored_exactly(ledger: Ledger, conn: sqlite3.Connection) -> None:
    """Amounts keep every digit (as TEXT) and project totals add line items without rounding."""
    ledger.replace_days([D1], [row(D1, "proj_a", BIG), row(D1, "proj_a", BIG, "x, output")], AT)
    stored = {amount for (amount,) in conn.execute("SELECT amount_usd FROM cost_rows")}
    assert stored == {BIG}
    assert str(ledger.project_totals(D1, D2)[D1]["proj_a"]) == "2.469135780246913578024691357802469135782"


def test_duplicate_rows_are_added_up(ledger: Ledger) -> None:
    """Two rows for the same day, project and line item (e.g. one per API key) are summed."""
    ledger.replace_days([D1], [row(D1, "proj_a", "1.10"), row(D1, "proj_a", "2.20")], AT)
    assert ledger.line_item_totals(D1, D2) == {D1: {("proj_a", "gpt-4o, input"): Decimal("3.30")}}


def test_zero_amounts_do_not_pad_totals(ledger: Ledger) -> None:
    """A `0E-6176` line item adds nothing to a project total, not even trailing zeros."""
    ledger.replace_days([D1], [row(D1, "proj_a", "0E-6176", "a"), row(D1, "proj_a", "1.23", "b")], AT)
    ledger.replace_days([D2], [row(D2, "proj_a", "1.23", "a"), row(D2, "proj_a", "0E-6176", "b")], AT)
    totals = ledger.project_totals(D1, D3)
    assert str(totals[D1]["proj_a"]) == str(totals[D2]["proj_a"]) == "1.23"


def test_rows_on_unlisted_days_are_stored(ledger: Ledger) -> None:
    """A row whose day is not in `days` still replaces that day rather than being dropped."""
    assert ledger.replace_days([D1], [row(D2, "proj_a", "1")], AT) == {D2}
    assert set(ledger.fetched_days(D1, D3)) == {D1, D2}
    assert ledger.project_totals(D1, D3) == {D2: {"proj_a": Decimal(1)}}


def test_nothing_to_replace_is_a_no_op(ledger: Ledger) -> None:
    """No days and no rows change nothing and record no fetch."""
    assert ledger.replace_days([], [], AT) == set()
    assert ledger.fetched_days(D1, D3) == {}


def test_replace_days_is_atomic(ledger: Ledger) -> None:
    """When the write fails half-way, the days keep their previous content and fetch times."""
    ledger.replace_days([D1], [row(D1, "proj_a", "1")], AT)
    bad = CostRow(day=D2, project_id=None, line_item=None, amount_usd=Decimal(1))  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        ledger.replace_days([D1, D2], [row(D1, "proj_a", "9"), bad], LATER)
    assert ledger.project_totals(D1, D3) == {D1: {"proj_a": Decimal(1)}}
    assert ledger.fetched_days(D1, D3) == {D1: AT}


def test_ungrouped_rows_count_in_totals_but_not_line_items(ledger: Ledger) -> None:
    """Rows without a line item are in project totals but left out of line item totals."""
    rows = [row(D1, "proj_a", "2", None), row(D1, "proj_b", "1", "web search"), row(D2, "proj_a", "4", None)]
    ledger.replace_days([D1, D2], rows, AT)
    assert ledger.project_totals(D1, D2) == {D1: {"proj_a": Decimal(2), "proj_b": Decimal(1)}}
    assert ledger.line_item_totals(D1, D3) == {D1: {("proj_b", "web search"): Decimal(1)}}


def test_ranges_are_end_exclusive_and_skip_days_without_rows(ledger: Ledger) -> None:
    """Queries cover [start, end); a fetched day without spend is absent from the totals."""
    ledger.replace_days([D1, D2, D3], [row(D1, "proj_a", "1"), row(D3, "proj_a", "3")], AT)
    assert list(ledger.project_totals(D1, D3)) == [D1]
    assert list(ledger.line_item_totals(D2, D3)) == []
    assert ledger.fetched_days(D2, D3) == {D2: AT}


def test_fetched_days_record_the_last_fetch(ledger: Ledger) -> None:
    """Each replace records the fetch time of its days; a later fetch overwrites it."""
    ledger.replace_days([D1, D2], [], AT)
    ledger.replace_days([D2], [], LATER)
    assert ledger.fetched_days(D1, D3) == {D1: AT, D2: LATER}


def test_prune_forgets_old_days(ledger: Ledger) -> None:
    """Pruning deletes rows, fetch marks and push marks before the cut-off and counts the deleted rows."""
    ledger.replace_days([D1, D2], [row(D1, "proj_a", "1"), row(D1, "proj_b", "1"), row(D2, "proj_a", "2")], AT)
    ledger.mark_unpushed([D1, D2])
    assert ledger.prune(D2) == 2
    assert ledger.project_totals(D1, D3) == {D2: {"proj_a": Decimal(2)}}
    assert list(ledger.fetched_days(D1, D3)) == [D2]
    assert ledger.unpushed_days() == [D2]


def test_projects_are_upserted_and_kept(ledger: Ledger) -> None:
    """Saving projects updates names, keeps projects missing from the new list and records the refresh."""
    assert ledger.projects_refreshed_at() is None
    ledger.save_projects([Project("proj_a", "Old"), Project("proj_b", "B")], AT)
    ledger.save_projects([Project("proj_a", 'New "ünïcode"\nname', archived=True)], LATER)
    assert ledger.projects() == {
        "proj_a": Project("proj_a", 'New "ünïcode"\nname', archived=True),
        "proj_b": Project("proj_b", "B"),
    }
    assert ledger.projects_refreshed_at() == LATER


def test_unpushed_days_round_trip(ledger: Ledger) -> None:
    """Days marked unpushed come back sorted and once each, until marked pushed."""
    ledger.mark_unpushed([D3, D1])
    ledger.mark_unpushed([D1])
    assert ledger.unpushed_days() == [D1, D3]
    ledger.mark_pushed([D1, D2])
    assert ledger.unpushed_days() == [D3]


def test_restart_keeps_everything(tmp_path: pathlib.Path) -> None:
    """Closing and reopening the state file keeps rows, fetch times, projects and push marks."""
    path = tmp_path / "state.sqlite3"
    conn = open_state(path)
    first = Ledger(conn)
    first.replace_days([D1], [row(D1, "proj_a", BIG)], AT)
    first.save_projects([Project("proj_a", "A")], AT)
    first.mark_unpushed([D1])
    conn.close()
    conn = open_state(path)
    again = Ledger(conn)
    assert again.project_totals(D1, D2) == {D1: {"proj_a": Decimal(BIG)}}
    assert again.fetched_days(D1, D2) == {D1: AT}
    assert again.projects() == {"proj_a": Project("proj_a", "A")}
    assert again.unpushed_days() == [D1]
    assert again.replace_days([D1], [row(D1, "proj_a", BIG)], LATER) == set()
    conn.close()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "0"),
        (["0E-6176", "0"], "0"),
        (["0E-6176", "1.23"], "1.23"),
        ([BIG, BIG, "-1"], "1.469135780246913578024691357802469135782"),
    ],
)
def test_exact_sum(values: list[str], expected: str) -> None:
    """exact_sum keeps every digit and skips zeros so they do not pad the result."""
    assert str(exact_sum(Decimal(value) for value in values)) == expected


def test_backfill_sized_page_round_trips(ledger: Ledger) -> None:
    """A page of 30 days x 200 projects x 3 line items is stored and summed back per project."""
    days = [D1 + dt.timedelta(days=n) for n in range(30)]
    rows = [
        row(day, f"proj_{p:03d}", f"{p}.{i}1", item)
        for day in days
        for p in range(200)
        for i, item in enumerate(["a, input", "a, output", "web search"])
    ]
    assert ledger.replace_days(days, rows, AT) == set(days)
    totals = ledger.project_totals(days[0], days[-1] + dt.timedelta(days=1))
    assert len(totals) == 30
    assert totals[days[7]]["proj_123"] == Decimal("369.33")
    assert ledger.replace_days(days, rows, LATER) == set()


def test_pushed_days_are_remembered_per_push_target(ledger: Ledger) -> None:
    """A day pushed to one VictoriaMetrics is not pushed to another: each target has its own pushed days."""
    first, second = push_target("http://127.0.0.1:8428/api/v1/import/prometheus"), push_target("http://vm2:8428/x")
    day = dt.date(2026, 11, 20)
    ledger.mark_pushed([day], first)
    ledger.mark_pushed([day], first)
    assert ledger.pushed_days(day, day + dt.timedelta(days=1), first) == {day: 2}
    assert ledger.pushed_days(day, day + dt.timedelta(days=1), second) == {}
    assert first == push_target("http://user:secret@127.0.0.1:8428/api/v1/import/prometheus?extra_label=a=b")


def test_an_older_state_file_pushed_days_go_to_the_first_target_that_asks(conn: sqlite3.Connection) -> None:
    """Pushed days kept before push targets (one target then) are adopted by the first target that asks."""
    conn.execute("CREATE TABLE IF NOT EXISTS pushed_days (day TEXT PRIMARY KEY, pushes INTEGER NOT NULL)")
    conn.execute("INSERT INTO pushed_days VALUES ('2026-11-20', 3)")
    conn.commit()
    ledger = Ledger(conn)
    day = dt.date(2026, 11, 20)
    assert ledger.pushed_days(day, day + dt.timedelta(days=1), "vm-a") == {day: 3}
    assert ledger.pushed_days(day, day + dt.timedelta(days=1), "vm-b") == {}
