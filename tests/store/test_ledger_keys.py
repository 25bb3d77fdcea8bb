"""The cost ledger by API key: rows stored both ways, keys adding up to the project exactly, revisions, pruning."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
from collections.abc import Iterator
from decimal import Decimal

import pytest

from openai_cost_exporter.core.models import NO_API_KEY, CostRow
from openai_cost_exporter.core.money import exact_sum
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state

D = Decimal
D1 = dt.date(2026, 12, 7)
D2 = dt.date(2026, 12, 8)
D3 = dt.date(2026, 12, 9)
AT = dt.datetime(2026, 12, 10, 6, tzinfo=dt.UTC)
LATER = dt.datetime(2026, 12, 10, 7, tzinfo=dt.UTC)
LONG = "0.123456789012345678901234567890123"  # 33 significant digits: beyond Decimal's default 28
INPUT, OUTPUT = "gpt-4o, input", "gpt-4o, output"


def row(day: dt.date, project: str, key: str, amount: str, item: str | None = INPUT) -> CostRow:
    return CostRow(day=day, project_id=project, line_item=item, amount_usd=D(amount), api_key_id=key)


@pytest.fixture
def ledger(tmp_path: pathlib.Path) -> Iterator[Ledger]:
    conn: sqlite3.Connection = open_state(tmp_path / "state.sqlite3")
    yield Ledger(conn)
    conn.close()


BASE = [
    row(D1, "proj_a", "key_1", "1.50"),
    row(D1, "proj_a", "key_1", "0.25", OUTPUT),
    row(D1, "proj_a", "key_2", "2", OUTPUT),
    row(D1, "proj_a", NO_API_KEY, "0.10"),
    row(D1, "proj_b", "key_3", "3"),
    row(D2, "proj_a", "key_2", "5"),
]


def test_rows_by_key_are_stored_both_ways(ledger: Ledger) -> None:
    """Rows by (project, line item, key) are summed over keys for the project figures and over line items per key."""
    assert ledger.replace_days([D1, D2], BASE, AT, by_key=True) == {D1, D2}
    assert ledger.key_totals(D1, D3) == {
        D1: {
            ("proj_a", "key_1"): D("1.75"),
            ("proj_a", "key_2"): D("2"),
            ("proj_a", NO_API_KEY): D("0.10"),
            ("proj_b", "key_3"): D("3"),
        },
        D2: {("proj_a", "key_2"): D("5")},
    }
    assert ledger.line_item_totals(D1, D2) == {
        D1: {("proj_a", INPUT): D("1.60"), ("proj_a", OUTPUT): D("2.25"), ("proj_b", INPUT): D("3")}
    }
    assert ledger.project_totals(D1, D3) == {D1: {"proj_a": D("3.85"), "proj_b": D("3")}, D2: {"proj_a": D("5")}}


def test_a_null_key_is_stored_as_none(ledger: Ledger) -> None:
    """A row by key without a key id (spend outside keys) is stored under NO_API_KEY."""
    ledger.replace_days([D1], [CostRow(D1, "proj_a", None, D("2"), None)], AT, by_key=True)
    assert ledger.key_totals(D1, D2) == {D1: {("proj_a", NO_API_KEY): D("2")}}


@pytest.mark.parametrize(
    "amounts",
    [
        ["1", "2", "3"],
        [LONG, LONG, "1E-40"],
        ["0E-6176", LONG, "0.000000000000000000000000000000000000001"],
        ["0E-6176", "0E-6176"],
        ["-0.5", LONG, "123456789.123456789123456789123456789"],  # a credit beside spend
    ],
)
def test_keys_add_up_to_the_project_exactly(ledger: Ledger, amounts: list[str]) -> None:
    """For every day and project, the key amounts sum to the project figure exactly (Decimal equality)."""
    keys = ["key_1", "key_2", NO_API_KEY]
    rows = [
        row(day, project, key, amount, item)
        for day in (D1, D2)
        for project in ("proj_a", "proj_b")
        for key, amount in zip(keys, amounts, strict=False)
        for item in (INPUT, OUTPUT, None)
    ]
    ledger.replace_days([D1, D2], rows, AT, by_key=True)
    projects = ledger.project_totals(D1, D3)
    by_key = ledger.key_totals(D1, D3)
    for day in (D1, D2):
        for project in ("proj_a", "proj_b"):
            mine = [amount for (pid, _), amount in by_key.get(day, {}).items() if pid == project]
            expected = exact_sum(D(a) for a in amounts * 3)  # three line items each
            assert exact_sum(mine) == projects.get(day, {}).get(project, D(0)) == expected


def test_long_amounts_are_kept_to_the_last_digit(ledger: Ledger) -> None:
    """A key's amount over line items keeps every digit the API sent."""
    rows = [row(D1, "proj_a", "key_1", LONG), row(D1, "proj_a", "key_1", LONG, OUTPUT)]
    ledger.replace_days([D1], rows, AT, by_key=True)
    assert ledger.key_totals(D1, D2)[D1][("proj_a", "key_1")] == D("0.246913578024691357802469135780246")


def test_a_page_not_by_key_clears_the_key_rows_of_its_days(ledger: Ledger) -> None:
    """Days re-stored by project only (before the epoch, or refused) keep no key figures; other days keep theirs."""
    ledger.replace_days([D1, D2], BASE, AT, by_key=True)
    by_project = [CostRow(D1, "proj_a", INPUT, D("3.85")), CostRow(D1, "proj_b", INPUT, D("3"))]
    ledger.replace_days([D1], by_project, LATER)
    assert ledger.key_totals(D1, D3) == {D2: {("proj_a", "key_2"): D("5")}}
    assert ledger.project_totals(D1, D2) == {D1: {"proj_a": D("3.85"), "proj_b": D("3")}}


def test_a_change_between_keys_alone_is_a_change(ledger: Ledger) -> None:
    """Spend moving from one key to another (same project and line items) marks the day changed and unpushed."""
    first = [row(D1, "proj_a", "key_1", "2"), row(D1, "proj_a", "key_2", "1")]
    moved = [row(D1, "proj_a", "key_1", "1"), row(D1, "proj_a", "key_2", "2")]
    ledger.replace_days([D1], first, AT, by_key=True)
    ledger.mark_pushed([D1])
    assert ledger.unpushed_days() == []
    assert ledger.replace_days([D1], moved, LATER, by_key=True) == {D1}
    assert ledger.project_totals(D1, D2) == {D1: {"proj_a": D("3")}}
    assert ledger.key_totals(D1, D2) == {D1: {("proj_a", "key_1"): D("1"), ("proj_a", "key_2"): D("2")}}
    assert ledger.unpushed_days() == [D1]


@pytest.mark.parametrize(
    "again",
    [
        BASE,
        [*BASE[::-1]],  # other order
        [row(D1, "proj_a", "key_1", "1.5000"), *BASE[1:]],  # same value, other spelling
        [*BASE, row(D1, "proj_c", "key_9", "0E-6176")],  # a zero row adds nothing
    ],
)
def test_identical_restore_changes_nothing(ledger: Ledger, again: list[CostRow]) -> None:
    """Storing the same figures again by key reports no change and marks nothing unpushed."""
    ledger.replace_days([D1, D2], BASE, AT, by_key=True)
    ledger.mark_pushed([D1, D2])
    assert ledger.replace_days([D1, D2], again, LATER, by_key=True) == set()
    assert ledger.unpushed_days() == []


def test_a_new_key_on_a_stored_day_is_a_change(ledger: Ledger) -> None:
    """A key appearing with spend changes the day even when its amount also shows in the project's figures."""
    ledger.replace_days([D1], [row(D1, "proj_a", "key_1", "3")], AT, by_key=True)
    split = [row(D1, "proj_a", "key_1", "2"), row(D1, "proj_a", "key_new", "1")]
    assert ledger.replace_days([D1], split, LATER, by_key=True) == {D1}


def test_key_totals_cover_only_the_asked_days(ledger: Ledger) -> None:
    """key_totals reads [start, end): the end day is left out."""
    ledger.replace_days([D1, D2], BASE, AT, by_key=True)
    assert set(ledger.key_totals(D2, D3)) == {D2}
    assert ledger.key_totals(D3, D3 + dt.timedelta(days=1)) == {}


def test_prune_deletes_key_rows(ledger: Ledger) -> None:
    """Pruning forgets the key rows of the days before the cut-off, and only them."""
    ledger.replace_days([D1, D2], BASE, AT, by_key=True)
    ledger.prune(D2)
    assert ledger.key_totals(D1, D3) == {D2: {("proj_a", "key_2"): D("5")}}


def test_a_fetch_by_project_keeps_the_key_figures_of_unchanged_days(ledger: Ledger) -> None:
    """A `report` or a fallback by project that finds a day unchanged keeps its key figures and by-key mark."""
    ledger.replace_days([D1, D2], BASE, AT, by_key=True)
    same = [CostRow(r.day, r.project_id, r.line_item, r.amount_usd) for r in BASE]
    assert ledger.replace_days([D1, D2], same, LATER) == set()
    assert ledger.key_totals(D1, D3)[D1][("proj_a", "key_1")] == D("1.75")
    assert set(ledger.key_fetched_days(D1, D3)) == {D1, D2}


def test_a_changed_day_fetched_by_project_loses_its_by_key_mark(ledger: Ledger) -> None:
    """When a fetch by project changes a day, its key figures and by-key mark go, so it is fetched by key again."""
    ledger.replace_days([D1, D2], BASE, AT, by_key=True)
    ledger.replace_days([D2], [CostRow(D2, "proj_a", INPUT, D("6"))], LATER)
    assert ledger.key_fetched_days(D1, D3) == {D1: AT}
    assert D2 not in ledger.key_totals(D1, D3)
