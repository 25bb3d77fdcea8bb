"""The report renderers: table for people, CSV and JSON for tools, exact amounts and safe names."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest

from openai_cost_exporter.cli.report import (
    DEFAULT_WIDTH,
    ReportData,
    format_exact,
    render_csv,
    render_json,
    render_table,
    safe_name,
    sparkline,
)

DAYS = [dt.date(2026, 11, 1) + dt.timedelta(days=n) for n in range(7)]
BIG = "1.234567890123456789012345678901234567891"
NAMES = {
    "proj_a": 'Ünïcødé "quoted", with comma',
    "proj_b": "line one\nline two",
    "proj_c": "数据团队 🚀",
    "proj_d": "[bold]not markup[/] :smile:",
}


def _data(**overrides: object) -> ReportData:
    totals = {
        day: {"proj_a": Decimal(n + 1), "proj_b": Decimal(BIG), "proj_c": Decimal("0.5")} for n, day in enumerate(DAYS)
    }
    totals[DAYS[-1]]["proj_d"] = Decimal("100")
    fields: dict[str, object] = {
        "days": DAYS,
        "totals": totals,
        "names": NAMES,
        "baseline": {"proj_a": Decimal(4), "proj_b": Decimal(BIG), "proj_gone": Decimal(2)},
    }
    fields.update(overrides)
    return ReportData(**fields)  # type: ignore[arg-type]


def test_csv_round_trips_names_and_exact_amounts() -> None:
    """The CSV parses back with the csv module to the same names, days and exact amount strings."""
    data = _data()
    rows = list(csv.DictReader(io.StringIO(render_csv(data))))
    assert len(rows) == 7 * 3 + 1
    assert {(row["project_id"], row["project"]) for row in rows} == {(pid, NAMES[pid]) for pid in NAMES}
    for row in rows:
        day = dt.date.fromisoformat(row["day"])
        assert Decimal(row["cost_usd"]) == data.totals[day][row["project_id"]]
    assert {row["cost_usd"] for row in rows if row["project_id"] == "proj_b"} == {BIG}


@pytest.mark.parametrize(
    "name", ['a "b", c', "x\ny\r\nz", "naïve — ユニコード 🚀", "=1+1", "", " leading space", "tab\there"]
)
def test_csv_and_json_keep_any_name(name: str) -> None:
    """Quotes, commas, newlines, unicode and empty names come back unchanged from CSV and JSON."""
    data = ReportData(days=DAYS[:1], totals={DAYS[0]: {"proj_x": Decimal("0.1")}}, names={"proj_x": name}, baseline={})
    (row,) = csv.DictReader(io.StringIO(render_csv(data)))
    assert row["project"] == name
    assert json.loads(render_json(data))["projects"][0]["project"] == name


def test_json_has_exact_amounts_and_every_day() -> None:
    """JSON carries exact decimal strings, a daily entry per shown day, baselines and the grand total."""
    document = json.loads(render_json(_data()))
    assert document["days"] == [day.isoformat() for day in DAYS]
    projects = {project["project_id"]: project for project in document["projects"]}
    assert projects["proj_b"]["daily"][DAYS[0].isoformat()] == BIG
    assert projects["proj_b"]["total_usd"] == "8.641975230864197523086419752308641975237"
    assert projects["proj_d"]["daily"][DAYS[0].isoformat()] == "0"
    assert projects["proj_d"]["baseline_usd"] is None
    assert projects["proj_gone"]["total_usd"] == "0"
    assert projects["proj_a"]["baseline_usd"] == "4"
    assert document["total_usd"] == "140.141975230864197523086419752308641975237"  # 28 + 3.5 + 100 + 7 x BIG


def test_json_lists_projects_by_spend() -> None:
    """Projects come biggest spender first, in JSON as in the table."""
    ids = [project["project_id"] for project in json.loads(render_json(_data()))["projects"]]
    assert ids == ["proj_d", "proj_a", "proj_b", "proj_c", "proj_gone"]


def test_table_shows_names_totals_and_sparklines() -> None:
    """The table has every (escaped) name, per-day cells, totals, vs-baseline figures, sparklines and TOTAL."""
    text = render_table(_data(), width=200)
    assert 'Ünïcødé "quoted", with comma' in text
    assert "line one\\nline two" in text
    assert "数据团队 🚀" in text
    assert "[bold]not markup[/] :smile:" in text
    assert "11-01" in text
    assert "11-07" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert lines["TOTAL"].split()[-3:] == ["140.14", "+1403%", "▁▁▁▁▁▁█"]  # 108.73 against 4 + 1.23 + 2
    assert "28.00" in text
    assert "+75%" in text  # proj_a: 7 against a baseline of 4
    assert "new" in text  # proj_d: no baseline
    assert "-100%" in text  # proj_gone: baseline but no spend
    assert "▂▃▄▅▆▇█" in text  # proj_a rising from 1 to 7, scaled from 0


def test_table_keeps_rows_intact_for_hostile_names() -> None:
    """Newlines, bidi overrides and lone surrogates in names are shown escaped, one line per project."""
    names = {"proj_a": "evil\u202eright-to-left", "proj_b": "two\nlines", "proj_c": "bad\ud800surrogate"}
    text = render_table(_data(names=names), width=200)
    assert "\u202e" not in text
    assert "\ud800" not in text
    assert "evil\\u202eright-to-left" in text
    assert "bad\\ud800surrogate" in text
    assert len([line for line in text.splitlines() if line.strip()]) == 2 + 5 + 1


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Search Reranker", "Search Reranker"),
        ("Café ✓ 日本", "Café ✓ 日本"),  # printable non-ASCII stays as it is
        ("two\nlines\ttab", "two\\nlines\\ttab"),
        ("evil\u202eright-to-left", "evil\\u202eright-to-left"),
        ("bad\ud800surrogate", "bad\\ud800surrogate"),
    ],
)
def test_safe_name_escapes_only_what_breaks_a_row(name: str, shown: str) -> None:
    """safe_name (public: backtest.py shows names with it too) escapes control, bidi and lone-surrogate characters
    and leaves every other character alone."""
    assert safe_name(name) == shown


@pytest.mark.parametrize("width", range(45, 131, 5))
def test_table_fits_the_width(width: int) -> None:
    """No line is wider than asked, no row wraps, and the newest days are the ones kept when space runs out."""
    text = render_table(_data(days=DAYS, names={}), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "proj_gone" in text
    if "11-01" in text:
        assert "11-07" in text


@pytest.mark.parametrize(
    ("width", "caption"), [(200, None), (90, "last 5 of 7 days"), (60, "last 2 of 7 days"), (45, "too narrow")]
)
def test_table_compresses_days(width: int, caption: str | None) -> None:
    """When days do not fit, the last ones that fit are shown (or only the total) and a caption says so."""
    text = render_table(_data(names={}), width=width)
    if caption is None:
        assert "shown" not in text
        assert "11-01" in text
    else:
        assert caption in text
        assert "11-01" not in text


def test_table_defaults_and_empty_data() -> None:
    """Without a width the table is DEFAULT_WIDTH wide; a report without days or spend renders the header and a
    TOTAL row with no amount and no comparison."""
    default = render_table(_data())
    assert default == render_table(_data(), width=DEFAULT_WIDTH) != render_table(_data(), width=DEFAULT_WIDTH - 20)
    assert max(len(line) for line in default.splitlines()) <= DEFAULT_WIDTH
    assert "11-01" in default  # 120 columns hold all seven days
    text = render_table(ReportData(days=[], totals={}, names={}, baseline={}))
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.strip().startswith("─")]
    assert rows == [["Project", "Total", "vs", "base", "Trend"], ["TOTAL", "-", "—"]]


def test_empty_name_falls_back_to_the_id_in_the_table() -> None:
    """A project whose name is empty is shown by its id in the table."""
    text = render_table(_data(names={"proj_a": ""}), width=200)
    assert "proj_a" in text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], ""),
        (["0", "0"], "▁▁"),
        (["5", "5", "5"], "███"),
        (["0", "1", "2", "3", "4", "5", "6", "7"], "▁▂▃▄▅▆▇█"),
        (["-1", "0", "1"], "▁▅█"),
        (["0E-6176", BIG], "▁█"),
    ],
)
def test_sparkline(values: list[str], expected: str) -> None:
    """Sparklines scale from zero (or the lowest negative value) to the highest value, one bar per value."""
    assert sparkline([Decimal(value) for value in values]) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("0E-6176", "0"),
        ("-0.00", "0"),
        ("1.2300", "1.23"),
        ("1E+3", "1000"),
        ("100", "100"),
        (BIG, BIG),
        ("-2.50", "-2.5"),
    ],
)
def test_format_exact(amount: str, expected: str) -> None:
    """Exact amounts are written as plain decimals without exponent or trailing zeros."""
    assert format_exact(Decimal(amount)) == expected
