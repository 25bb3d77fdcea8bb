"""`report --by api-key`: a row per key of each project, from the state file, named from the key listings."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Collection, Iterator, Mapping
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.cli.report import ReportData, gather_report, render_csv, render_json, render_table
from openai_cost_exporter.core.models import ApiKey, CostRow, Project
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state

D = Decimal
NOW = dt.datetime(2026, 12, 2, 15, tzinfo=dt.UTC)
TODAY = NOW.date()
YESTERDAY = TODAY - dt.timedelta(days=1)


class Directory:
    """Key names as the listings gave them, recording which projects were asked for."""

    def __init__(self) -> None:
        self.asked: list[set[str]] = []

    def key_names(self, project_ids: Collection[str], timeout: float) -> Mapping[str, ApiKey]:
        self.asked.append(set(project_ids))
        return {"key_bot": ApiKey("key_bot", "checkout, bot", "checkout", "service_account")}


@pytest.fixture
def data(tmp_path: Path) -> Iterator[tuple[ReportData, Directory]]:
    conn = open_state(tmp_path / "state.sqlite3")
    ledger = Ledger(conn)
    ledger.save_projects([Project("proj_a", "Checkout Agent")], NOW)
    rows = [
        CostRow(YESTERDAY, "proj_a", None, D("1.25"), "key_bot"),
        CostRow(TODAY, "proj_a", None, D("0.000000001"), "key_bot"),
        CostRow(TODAY, "proj_a", None, D("3"), "key_gone"),
        CostRow(TODAY, "proj_a", None, D("0.5"), "none"),
    ]
    ledger.replace_days([YESTERDAY, TODAY], rows, NOW, by_key=True)
    directory = Directory()
    yield (
        gather_report(None, ledger, NOW, days=2, baseline_days=7, line_items=False, by_key=True, directory=directory),
        directory,
    )
    conn.close()


def test_rows_are_keys_named_with_owner_and_deleted_keys_keep_their_id(data: tuple[ReportData, Directory]) -> None:
    """JSON lists each key of the project with its name and owner, exact amounts, a deleted key by its id and
    spend outside keys as its own row; the names were asked for the projects with spend by key."""
    report, directory = data
    rows = {row["api_key_id"]: row for row in json.loads(render_json(report))["api_keys"]}
    assert rows["key_bot"]["api_key"] == "checkout, bot" and rows["key_bot"]["owner"] == "service account checkout"
    assert rows["key_bot"]["total_usd"] == "1.250000001"
    assert rows["key_gone"]["api_key"] == "key_gone" and rows["key_gone"]["owner"] == ""
    assert rows["none"]["api_key"] == "no API key" and rows["none"]["project"] == "Checkout Agent"
    assert directory.asked == [{"proj_a"}]


def test_csv_has_a_row_per_day_and_key(data: tuple[ReportData, Directory]) -> None:
    """CSV is long format with the key's id, name and owner, quoted where a name needs it."""
    report, _ = data
    lines = list(csv.reader(io.StringIO(render_csv(report))))
    assert lines[0] == ["day", "project_id", "project", "api_key_id", "api_key", "owner", "cost_usd"]
    assert [
        YESTERDAY.isoformat(),
        "proj_a",
        "Checkout Agent",
        "key_bot",
        "checkout, bot",
        "service account checkout",
        "1.25",
    ] in lines
    assert len(lines) == 1 + 4


def test_table_heads_the_rows_as_project_and_key(data: tuple[ReportData, Directory]) -> None:
    """The table's first column is "Project: API key" and each row reads "project: key"."""
    table = render_table(data[0], width=160)
    assert "Project: API key" in table and "Checkout Agent: key_gone" in table
