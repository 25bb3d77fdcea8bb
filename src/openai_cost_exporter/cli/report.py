"""`openai-cost-exporter report`: the figures (`gather_report`, through the cycle's fetch path), then text
out (a table for people, CSV and JSON for tools).

Amounts stay `Decimal`: CSV and JSON carry them as exact decimal strings, the table rounds them to cents.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from openai_cost_exporter.core.models import DAY
from openai_cost_exporter.core.money import ZERO, exact_sum, plain
from openai_cost_exporter.figures.api_keys import key_name, key_owner
from openai_cost_exporter.figures.baselines import lookback
from openai_cost_exporter.figures.snapshot import baseline
from openai_cost_exporter.ingest.costs import Window, fetch_into_ledger
from openai_cost_exporter.ingest.directory import KeyDirectory
from openai_cost_exporter.sources.ports import CostSource
from openai_cost_exporter.store.ledger import Ledger

#: Console width when the caller does not give one (the CLI passes the terminal's).
DEFAULT_WIDTH = 120
#: Widest the project column grows; longer names fold onto several lines.
NAME_MAX = 32
#: Days a sparkline covers at most (the last ones).
SPARK_MAX = 31
SPARK_BARS = "▁▂▃▄▅▆▇█"
#: Characters a column costs besides its content: padding on both sides and a separator (or the left edge).
_COLUMN_OVERHEAD = 3
#: The table's right edge.
_TABLE_EDGE = 1
#: Characters that would move the cursor or reorder text in a terminal: shown escaped instead.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True, slots=True)
class ReportData:
    """What a report shows: the days (oldest first), totals per day per row, names and baselines.

    A row is a project, or with `keys` (`report --by api-key`) one API key of a project: its id is then
    `key_row(project_id, api_key_id)` and `keys` gives its KeyRow."""

    days: list[dt.date]
    totals: dict[dt.date, dict[str, Decimal]]
    names: dict[str, str]
    baseline: dict[str, Decimal]
    keys: dict[str, KeyRow] | None = None


@dataclass(frozen=True, slots=True)
class KeyRow:
    """What a row of `report --by api-key` is: one key of one project."""

    project_id: str
    project: str
    api_key_id: str
    api_key: str
    owner: str


@dataclass(frozen=True, slots=True)
class _Line:
    """One project's figures over the shown days."""

    project_id: str
    name: str
    daily: list[Decimal]
    total: Decimal
    baseline: Decimal | None


def gather_report(
    source: CostSource | None,
    ledger: Ledger,
    now: dt.datetime,
    *,
    days: int,
    baseline_days: int,
    line_items: bool,
    progress: bool = False,
    by_key: bool = False,
    directory: KeyDirectory | None = None,
    fetch_by_key: bool = False,
) -> ReportData:
    """The last `days` days (today included) per project (per API key with `by_key`), with the baseline of today;
    offline without a source. Keys are named from `directory` (listing the projects not listed yet)."""
    today = now.date()
    # Every day the baseline reads: a weekend day's looks back four weeks (baselines.lookback), not `baseline_days`.
    first = today - dt.timedelta(days=max(days - 1, lookback(baseline_days)))
    if source is not None:
        keyed = by_key or fetch_by_key  # `--api-keys` keeps the state file's key figures current too
        window = Window(first, today + DAY, line_items, source.page_days(line_items=line_items, api_keys=keyed), keyed)
        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task("fetching costs", total=(window.end - window.start).days)
            fetched = fetch_into_ledger(
                source, ledger, window, now, refresh_names=True, on_page=lambda page: bar.advance(task, len(page.days))
            )
        if fetched.names_error is not None:
            raise fetched.names_error
    totals = ledger.project_totals(first, today + DAY)
    names = ledger.names()
    shown = [today - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]
    if by_key:
        return _by_key(ledger, first, today, shown, names, baseline_days, directory)
    projects = {pid for day in shown for pid in totals.get(day, {})}
    return ReportData(
        days=shown,
        totals={day: dict(totals.get(day, {})) for day in shown},
        names={pid: names.get(pid, pid) for pid in projects},
        baseline=baseline(totals, today, baseline_days),
    )


#: How long `report --by api-key` waits for the key listings of the projects that spend by key.
KEY_LISTING_SECONDS = 120.0


def key_row(project_id: str, api_key_id: str) -> str:
    """The row id of one key of a project."""
    return f"{project_id}/{api_key_id}"


def _by_key(
    ledger: Ledger,
    first: dt.date,
    today: dt.date,
    shown: list[dt.date],
    names: Mapping[str, str],
    baseline_days: int,
    directory: KeyDirectory | None,
) -> ReportData:
    by_key = ledger.key_totals(first, today + DAY)
    totals = {day: {key_row(*key): amount for key, amount in amounts.items()} for day, amounts in by_key.items()}
    spenders = {pid for amounts in by_key.values() for (pid, _) in amounts}
    keys = directory.key_names(spenders, KEY_LISTING_SECONDS) if directory is not None and spenders else {}
    rows: dict[str, KeyRow] = {}  # every key of the window: the shown days' and those with a baseline
    for amounts in by_key.values():
        for pid, key_id in amounts:
            project = names.get(pid, pid)
            rows[key_row(pid, key_id)] = KeyRow(pid, project, key_id, key_name(key_id, keys), key_owner(key_id, keys))
    return ReportData(
        days=shown,
        totals={day: dict(totals.get(day, {})) for day in shown},
        names={row: f"{key.project}: {key.api_key}" for row, key in rows.items()},
        baseline=baseline(totals, today, baseline_days),
        keys=rows,
    )


def render_table(data: ReportData, *, width: int | None = None) -> str:
    """A text table: a row per project by spend, a column per day (the last ones that fit), totals, trend."""
    width = width or DEFAULT_WIDTH
    lines = _lines(data)
    total = _total_line(data, lines)
    shown = _days_that_fit(data.days, [*lines, total], width)
    table = Table(box=box.SIMPLE_HEAD, caption=_caption(len(data.days), shown), caption_justify="left")
    table.add_column("Project: API key" if data.keys is not None else "Project", max_width=NAME_MAX, overflow="fold")
    for day in data.days[len(data.days) - shown :]:
        table.add_column(day.strftime("%m-%d"), justify="right", no_wrap=True)
    for header in ("Total", "vs base"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Trend", no_wrap=True)
    for index, line in enumerate([*lines, total]):
        table.add_row(*_table_cells(line, shown), end_section=index == len(lines) - 1)
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, markup=False, emoji=False, highlight=False, _environ={})
    console.print(table)
    return "\n".join(row.rstrip() for row in out.getvalue().splitlines()) + "\n"


def render_csv(data: ReportData) -> str:
    """Long format, one row per day and project with spend: day,project_id,project,cost_usd (exact); by API key
    also api_key_id,api_key,owner."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if data.keys is not None:
        writer.writerow(["day", "project_id", "project", "api_key_id", "api_key", "owner", "cost_usd"])
    else:
        writer.writerow(["day", "project_id", "project", "cost_usd"])
    for day in data.days:
        for row, amount in sorted(data.totals.get(day, {}).items()):
            if data.keys is not None:
                k = data.keys[row]
                writer.writerow(
                    [day.isoformat(), k.project_id, k.project, k.api_key_id, k.api_key, k.owner, format_exact(amount)]
                )
            else:
                writer.writerow([day.isoformat(), row, _name(data, row), format_exact(amount)])
    return out.getvalue()


def render_json(data: ReportData) -> str:
    """The report as JSON; every amount an exact decimal string, every day of the window in `daily`."""
    lines = _lines(data)
    document = {
        "days": [day.isoformat() for day in data.days],
        "api_keys" if data.keys is not None else "projects": [
            {
                **_json_ids(data, line),
                "total_usd": format_exact(line.total),
                "baseline_usd": None if line.baseline is None else format_exact(line.baseline),
                "daily": {day.isoformat(): format_exact(v) for day, v in zip(data.days, line.daily, strict=True)},
            }
            for line in lines
        ],
        "total_usd": format_exact(exact_sum(line.total for line in lines)),
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def _json_ids(data: ReportData, line: _Line) -> dict[str, str]:
    if data.keys is None:
        return {"project_id": line.project_id, "project": line.name}
    k = data.keys[line.project_id]
    return {
        "project_id": k.project_id,
        "project": k.project,
        "api_key_id": k.api_key_id,
        "api_key": k.api_key,
        "owner": k.owner,
    }


def sparkline(values: Sequence[Decimal]) -> str:
    """One bar per value, scaled from min(0, lowest) to the highest; flat at the bottom when all are equal."""
    if not values:
        return ""
    low, high = min(*values, ZERO), max(values)
    if high == low:
        return SPARK_BARS[0] * len(values)
    steps = len(SPARK_BARS) - 1
    return "".join(
        SPARK_BARS[int(((value - low) * steps / (high - low)).quantize(Decimal(1), ROUND_HALF_UP))] for value in values
    )


def format_exact(amount: Decimal) -> str:
    """A plain decimal string with the exact value: no exponent, no trailing zeros (`0E-6176` -> `0`)."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def _lines(data: ReportData) -> list[_Line]:
    """A line per project with spend in the window or a non-zero baseline, the biggest spenders first."""
    project_ids = {pid for day in data.days for pid in data.totals.get(day, {})}
    project_ids |= {pid for pid, value in data.baseline.items() if value}
    lines = []
    for pid in project_ids:
        daily = [data.totals.get(day, {}).get(pid, ZERO) for day in data.days]
        lines.append(_Line(pid, _name(data, pid), daily, exact_sum(daily), data.baseline.get(pid)))
    return sorted(lines, key=lambda line: (-line.total, line.name, line.project_id))


def _total_line(data: ReportData, lines: list[_Line]) -> _Line:
    daily = [exact_sum(line.daily[index] for line in lines) for index in range(len(data.days))]
    baselines = [line.baseline for line in lines if line.baseline is not None]
    baseline = exact_sum(baselines) if baselines else None
    return _Line("", "TOTAL", daily, exact_sum(daily), baseline)


def _table_cells(line: _Line, shown: int) -> list[Text]:
    name, total, vs_base, trend = _fixed_cells(line)
    days = [_money(value) for value in line.daily[len(line.daily) - shown :]]
    return [Text(cell) for cell in (name, *days, total, vs_base, trend)]


def _fixed_cells(line: _Line) -> tuple[str, str, str, str]:
    """Project, Total, vs base and Trend cells of a line: the columns shown at any width."""
    last = line.daily[-1] if line.daily else None
    name = safe_name(line.name) or line.project_id
    return name, _money(line.total), _vs_baseline(last, line.baseline), sparkline(line.daily[-SPARK_MAX:])


def _days_that_fit(days: list[dt.date], lines: list[_Line], width: int) -> int:
    """How many of the last days get a column of their own next to the fixed columns."""
    rows = [("Project", "Total", "vs base", "Trend"), *(_fixed_cells(line) for line in lines)]
    widths = [max(cell_len(row[column]) for row in rows) for column in range(4)]
    room = width - min(widths[0], NAME_MAX) - sum(widths[1:]) - 4 * _COLUMN_OVERHEAD - _TABLE_EDGE
    shown = 0
    for index in range(len(days) - 1, -1, -1):
        room -= max(5, *(len(_money(line.daily[index])) for line in lines)) + _COLUMN_OVERHEAD
        if room < 0:
            break
        shown += 1
    return shown


def _caption(total_days: int, shown: int) -> str | None:
    if shown == total_days:
        return None
    if shown == 0:
        return f"{total_days} days: too narrow for daily columns, Total covers them all"
    return f"last {shown} of {total_days} days shown; Total covers all {total_days}"


def _vs_baseline(last: Decimal | None, baseline: Decimal | None) -> str:
    """The last day against the baseline's daily mean: +x%, `new` without a baseline, — without spend."""
    if last is None:
        return "—"
    if not baseline:
        return "new" if last > 0 else "—"
    change = (last - baseline) * 100 / baseline
    return f"{change.quantize(Decimal(1), ROUND_HALF_UP):+}%"


def _money(amount: Decimal) -> str:
    return plain(amount)


def _name(data: ReportData, project_id: str) -> str:
    return data.names.get(project_id, project_id)


def safe_name(name: str) -> str:
    """The name with control, line-break, bidi and lone-surrogate characters escaped, so rows stay intact."""
    return "".join(
        ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        if ch in _BIDI_CONTROLS or unicodedata.category(ch) in _UNSAFE_CATEGORIES
        else ch
        for ch in name
    )
