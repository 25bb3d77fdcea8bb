"""History through the CLI: `backfill`, revised closed days, `--backfill-days`, `report`, and a corrupt state.

The fake OpenAI organization runs in-process (its clock frozen at the test's moment, which the CLI gets
as its own through OPENAI_COST_EXPORTER_TEST_NOW, so its "today" is the fake's), the CLI runs as a subprocess, and
pushes land in a real VictoriaMetrics started with `-dedup.minScrapeInterval=1ms`, as the README tells users to run
it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openai_cost_exporter.cli.report import SPARK_BARS
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import UNATTRIBUTED, CostRow, day_start
from openai_cost_exporter.export.collector import day_sample_time
from openai_cost_exporter.fake.api import FakeAdminAPI, Faults
from openai_cost_exporter.fake.org import AWKWARD_NAMES, FakeOrg
from openai_cost_exporter.rules.runaway import median
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state
from tests.clirun import (
    ADMIN_KEY,
    Result,
    cli_now,
    days_of_its_kind,
    run_cli,
    run_once,
    serving,
    tagged,
)
from tests.moments import SATURDAY_1000, SUNDAY_1300
from tests.stack import VictoriaMetrics, free_port

pytestmark = pytest.mark.stack

DAY = dt.timedelta(days=1)
DAY_MS = 86_400_000
#: VictoriaMetrics keeps about 12 significant digits of a sample (tests/test_cli_run.py).
VM_REL = 1e-11
#: A plain decimal string: no exponent, no trailing zeros after the point (report.format_exact).
EXACT = re.compile(r"-?\d+(\.\d*[1-9])?")


@pytest.fixture
def org(now: dt.datetime) -> FakeOrg:
    return FakeOrg.generate(seed=4, project_count=40, clock=FrozenClock(now))


@pytest.fixture
def api(org: FakeOrg) -> Iterator[FakeAdminAPI]:
    # String amounts: "0E-6176", 39-digit and "NE-9" shapes (openai-admin-api.md §7.1), zero rows included.
    with FakeAdminAPI(org, admin_key=ADMIN_KEY, faults=Faults(amount_format="string")) as fake:
        yield fake


def today_of(org: FakeOrg) -> dt.date:
    return org.clock.now().date()


def label(project_id: str | None) -> str:
    return UNATTRIBUTED if project_id is None else project_id


def expected_names(org: FakeOrg) -> dict[str, str]:
    """The `project` label / report name of every project id: the name, or the id when the API has none."""
    names = {p.id: p.name if p.name is not None else p.id for p in org.projects}
    names[UNATTRIBUTED] = UNATTRIBUTED
    return names


def spenders(org: FakeOrg, days: list[dt.date]) -> set[str]:
    """Project ids (unattributed included) with non-zero spend on any of `days`."""
    return {label(pid) for day in days for pid in org.daily_totals(day)}


def truth(org: FakeOrg, day: dt.date, project_id: str) -> Decimal:
    return org.daily_total(day, None if project_id == UNATTRIBUTED else project_id)


def baseline_truth(org: FakeOrg, project_id: str) -> Decimal:
    """The usual full day: the median of the same kind of day (weekday or weekend) among the last 7 closed days."""
    return median([truth(org, day, project_id) for day in days_of_its_kind(today_of(org))])


def closed_days(org: FakeOrg, count: int) -> list[dt.date]:
    """The `count` complete UTC days before today, oldest first."""
    today = today_of(org)
    return [today - n * DAY for n in range(count, 0, -1)]


def samples_by_project(vm: VictoriaMetrics, match: str) -> dict[str, list[tuple[int, float]]]:
    """(timestamp ms, value) of every raw sample per project_id, oldest first."""
    vm.force_flush()
    out: dict[str, list[tuple[int, float]]] = {}
    for series in vm.export(match):
        pid = series["metric"]["project_id"]
        assert pid not in out, f"two series for {pid}: {series['metric']}"
        out[pid] = sorted(zip(series["timestamps"], series["values"], strict=True))
    return out


def in_day(samples: list[tuple[int, float]], day: dt.date) -> list[tuple[int, float]]:
    start = day_start(day) * 1000
    return [(ts, value) for ts, value in samples if start <= ts < start + DAY_MS]


def stamp_ms(day: dt.date) -> int:
    return int(day_sample_time(day) * 1000)


def assert_clean(result: Result) -> None:
    assert ADMIN_KEY not in result.output and "Traceback" not in result.output, result.output


def backfill(api: FakeAdminAPI, vm: VictoriaMetrics, state: Path, run: str, *extra: str) -> Result:
    result = run_cli(
        "backfill", "--days", "30", "--push-url", vm.import_url, "--push-label", f"run={run}",
        "--base-url", api.base_url, "--state-dir", str(state), *extra, now=cli_now(api.org),
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert_clean(result)
    return result


# ---- backfill ---------------------------------------------------------------------------------------------


def assert_thirty_days(org: FakeOrg, series: dict[str, list[tuple[int, float]]]) -> None:
    days = closed_days(org, 30)
    assert spenders(org, days) <= set(series)
    for pid, samples in series.items():
        assert [ts for ts, _ in samples] == [stamp_ms(day) for day in days], pid
        for (_, value), day in zip(samples, days, strict=True):
            assert value == pytest.approx(float(truth(org, day, pid)), rel=VM_REL), (pid, day)


@pytest.mark.calendar
def test_backfill_writes_one_sample_per_day_equal_to_the_daily_sums(
    api: FakeAdminAPI, org: FakeOrg, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """`backfill --days 30` gives every project with spend (unattributed too) 30 samples at 23:59:59 of each
    closed UTC day, equal to the fake's sums (0 on days without spend), with awkward names intact; a second run
    leaves exactly one sample per day."""
    run_twice = tagged("twice", org)
    first = backfill(api, vm, tmp_path, run_twice)
    assert "backfill done: 30 days" in first.stderr
    series = samples_by_project(vm, f'openai_daily_cost_usd{{run="{run_twice}"}}')
    assert UNATTRIBUTED in series
    assert_thirty_days(org, series)
    labels = {s["metric"]["project_id"]: s["metric"] for s in vm.export(f'openai_daily_cost_usd{{run="{run_twice}"}}')}
    names = expected_names(org)
    assert {pid: metric["project"] for pid, metric in labels.items()} == {pid: names[pid] for pid in labels}
    assert {metric["job"] for metric in labels.values()} == {"openai_cost_exporter"}
    assert {'Team "Quotes" Bot', "Übersetzung 🚀 東京", "Line one\nLine two"} <= {m["project"] for m in labels.values()}
    backfill(api, vm, tmp_path, run_twice)
    assert_thirty_days(org, samples_by_project(vm, f'openai_daily_cost_usd{{run="{run_twice}"}}'))


def test_backfill_with_line_items_writes_each_line_item_per_day(
    api: FakeAdminAPI, org: FakeOrg, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """With `--line-items`, `openai_daily_line_item_cost_usd` holds one sample per line item and closed day equal to
    the fake's cell, and the project totals are still the sums over the line items."""
    run_items = tagged("items", org)
    backfill(api, vm, tmp_path, run_items, "--line-items")
    vm.force_flush()
    got: dict[tuple[str, str, int], list[float]] = {}
    for series in vm.export(f'openai_daily_line_item_cost_usd{{run="{run_items}"}}'):
        key = (series["metric"]["project_id"], series["metric"]["line_item"])
        for ts, value in zip(series["timestamps"], series["values"], strict=True):
            got.setdefault((*key, ts), []).append(value)
    want = {
        (label(pid), item, stamp_ms(day)): amount
        for day in closed_days(org, 30)
        for (pid, item), amount in org.line_item_totals(day).items()
    }
    assert want and set(want) <= set(got)
    assert all(len(values) == 1 for values in got.values())
    for cell, values in got.items():
        assert values[0] == pytest.approx(float(want.get(cell, Decimal(0))), rel=VM_REL), cell
    assert_thirty_days(org, samples_by_project(vm, f'openai_daily_cost_usd{{run="{run_items}"}}'))


# ---- revisions and first-start backfill through `run --once` ------------------------------------------------


def latest(samples: list[tuple[int, float]]) -> float:
    return samples[-1][1]


@pytest.mark.calendar
@pytest.mark.parametrize("days_ago", [1, 2], ids=["yesterday", "oldest-revision-day"])
def test_revised_closed_day_is_rewritten_and_moves_the_baseline(
    api: FakeAdminAPI, org: FakeOrg, vm: VictoriaMetrics, tmp_path: Path, days_ago: int
) -> None:
    """A closed day inside the revision window that the API revises is re-pushed on the next `run --once`: its one
    new total is written a millisecond after the first sample, and the pushed baseline moves by the change / 7."""
    run = f"revision-{days_ago}"
    # Without usage the pushed baseline is the usual full day (with usage it is scaled to the hour).
    push = ("--push-url", vm.import_url, "--push-label", f"run={run}", "--no-usage")
    first = run_once(api.base_url, tmp_path, *push, now=cli_now(api.org))
    assert first.returncode == 0, first.output
    day = today_of(org) - days_ago * DAY
    pid, item = max(org.line_item_totals(day).items(), key=lambda cell: (cell[0][0] is not None, cell[1]))[0]
    assert pid is not None
    baseline_before = latest(samples_by_project(vm, f'openai_daily_cost_baseline_usd{{run="{run}"}}')[pid])
    assert baseline_before == pytest.approx(float(baseline_truth(org, pid)), rel=VM_REL)
    old_total, delta = truth(org, day, pid), Decimal("123.456789017")
    org.set_cost(day, pid, item, org.line_item_totals(day)[(pid, item)] + delta)
    assert truth(org, day, pid) == old_total + delta

    result = run_once(api.base_url, tmp_path, *push, now=cli_now(api.org))
    assert result.returncode == 0, result.output
    assert " 1 closed days pushed" in result.stderr, first.output + result.output
    daily = samples_by_project(vm, f'openai_daily_cost_usd{{run="{run}"}}')
    # The revision lands a millisecond after the first push, inside the day: the newest sample wins in any mode.
    revised = in_day(daily[pid], day)
    assert [ts for ts, _ in revised] == [stamp_ms(day), stamp_ms(day) + 1]
    assert [value for _, value in revised] == pytest.approx([float(old_total), float(old_total + delta)], rel=VM_REL)
    baseline_after = latest(samples_by_project(vm, f'openai_daily_cost_baseline_usd{{run="{run}"}}')[pid])
    assert baseline_after == pytest.approx(float(baseline_truth(org, pid)), rel=VM_REL)


def costs_start_times(api: FakeAdminAPI) -> list[int]:
    """`start_time` of every costs request so far."""
    return [
        int(param.split("=", 1)[1])
        for path, query in api.request_log
        if path == "/v1/organization/costs"
        for param in query.split("&")
        if param.startswith("start_time=")
    ]


@pytest.mark.calendar
def test_backfill_days_pushes_forty_days_on_first_start_only(
    api: FakeAdminAPI, org: FakeOrg, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """`run --once --backfill-days 40` fetches and pushes the 40 closed days on a fresh state dir; the next cycle
    only reads the revision window again and, nothing having changed, pushes no closed day."""
    run_first_start = tagged("first-start", org)
    push = (
        "--push-url",
        vm.import_url,
        "--push-label",
        f"run={run_first_start}",
        "--backfill-days",
        "40",
        "--no-spend-limits",
    )
    first = run_once(api.base_url, tmp_path, *push, now=cli_now(api.org))
    assert first.returncode == 0, first.output
    assert " 40 closed days pushed" in first.stderr
    assert min(costs_start_times(api)) == day_start(today_of(org) - 40 * DAY)
    daily = samples_by_project(vm, f'openai_daily_cost_usd{{run="{run_first_start}"}}')
    default = org.projects[0].id  # the default project spends on every day of its long life
    for day in closed_days(org, 40):
        [(ts, value)] = in_day(daily[default], day)
        assert ts == stamp_ms(day) and value == pytest.approx(float(truth(org, day, default)), rel=VM_REL)
    api.request_log.clear()
    second = run_once(api.base_url, tmp_path, *push, now=cli_now(api.org))
    assert second.returncode == 0, second.output
    assert (
        " 0 closed days pushed" in second.stderr and "5 API requests" in second.stderr
    )  # costs, then usage: completions and embeddings, by hour and by minute
    assert costs_start_times(api) == [day_start(today_of(org) - 2 * DAY)]


# ---- report ----------------------------------------------------------------------------------------------


def report(
    source: str, state: Path, fmt: str, *extra: str, now: dt.datetime, env: dict[str, str] | None = None
) -> Result:
    """`report --days 14` with the CLI's clock at `now` (the fake's time, also when offline)."""
    result = run_cli(
        "report", "--days", "14", "--format", fmt, "--base-url", source, "--state-dir", str(state), *extra,
        env=env, now=now,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert_clean(result)
    return result


@pytest.fixture
def offline_state(api: FakeAdminAPI, tmp_path: Path) -> Path:
    """A state dir that one `run --once --backfill-days 14` filled: the whole report window is in it."""
    state = tmp_path / "offline"
    assert run_once(api.base_url, state, "--backfill-days", "14", now=cli_now(api.org)).returncode == 0
    return state


def report_days(org: FakeOrg) -> list[dt.date]:
    today = today_of(org)
    return [today - n * DAY for n in range(13, -1, -1)]


def check_csv(org: FakeOrg, text: str) -> None:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["day", "project_id", "project", "cost_usd"]
    names, days = expected_names(org), report_days(org)
    seen = set()
    for day, pid, name, amount in rows[1:]:
        assert EXACT.fullmatch(amount), amount
        assert Decimal(amount) == truth(org, dt.date.fromisoformat(day), pid), (day, pid)
        assert name == names[pid]
        seen.add((day, pid))
    assert {(d.isoformat(), label(p)) for d in days for p in org.daily_totals(d)} <= seen
    assert {'Team "Quotes" Bot', "Übersetzung 🚀 東京", "Line one\nLine two", "C:\\ml\\batch jobs"} <= {
        row[2] for row in rows[1:]
    }


def check_json(org: FakeOrg, text: str) -> None:
    document: dict[str, Any] = json.loads(text)
    days, names = report_days(org), expected_names(org)
    assert document["days"] == [day.isoformat() for day in days]
    projects = {entry["project_id"]: entry for entry in document["projects"]}
    assert spenders(org, days) <= set(projects)
    for pid, entry in projects.items():
        daily = [truth(org, day, pid) for day in days]
        assert entry["project"] == names[pid]
        assert {day: Decimal(v) for day, v in entry["daily"].items()} == dict(zip(document["days"], daily, strict=True))
        assert Decimal(entry["total_usd"]) == sum(daily, Decimal(0))
        baseline = entry["baseline_usd"]
        assert Decimal(baseline or 0) == baseline_truth(org, pid), pid
        assert all(EXACT.fullmatch(v) for v in [entry["total_usd"], *entry["daily"].values()])
    grand = sum((truth(org, day, pid) for day in days for pid in projects), Decimal(0))
    assert Decimal(document["total_usd"]) == grand


def check_table(org: FakeOrg, text: str) -> None:
    days = report_days(org)
    grand = sum((amount for day in days for amount in org.daily_totals(day).values()), Decimal(0))
    total_rows = [line for line in text.splitlines() if line.strip().startswith("TOTAL")]
    assert len(total_rows) == 1 and f"{grand:,.2f}" in total_rows[0], text
    assert any(bar in total_rows[0] for bar in SPARK_BARS)
    for name in ('Team "Quotes" Bot', "Übersetzung 🚀 東京", "Line one\\nLine two", "C:\\ml\\batch jobs"):
        assert name in text, name
    assert days[-1].strftime("%m-%d") in text


CHECKS = {"csv": check_csv, "json": check_json, "table": check_table}


@pytest.mark.calendar
@pytest.mark.parametrize("fmt", sorted(CHECKS))
def test_report_online_matches_the_api(api: FakeAdminAPI, org: FakeOrg, tmp_path: Path, fmt: str) -> None:
    """`report --days 14` fetched from the API gives the fake's exact sums, names with quotes, backslashes,
    line breaks and non-Latin characters intact, and (as a table) a TOTAL row and sparklines."""
    assert {n for n in AWKWARD_NAMES if n} <= {p.name for p in org.projects if not p.archived}
    CHECKS[fmt](org, report(api.base_url, tmp_path, fmt, now=cli_now(org)).stdout)


@pytest.mark.parametrize("fmt", sorted(CHECKS))
def test_report_offline_reads_only_the_state(api: FakeAdminAPI, org: FakeOrg, offline_state: Path, fmt: str) -> None:
    """`report --offline` after a run needs no key and no API (the base URL is a closed port) and shows the same
    figures as the API does."""
    requests = len(api.request_log)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    result = report(dead, offline_state, fmt, "--offline", now=cli_now(org), env={"OPENAI_ADMIN_KEY": ""})
    assert len(api.request_log) == requests
    CHECKS[fmt](org, result.stdout)


def test_report_offline_and_online_csv_are_identical(api: FakeAdminAPI, offline_state: Path, tmp_path: Path) -> None:
    """The same window reads byte for byte the same from the state file as from the API."""
    now = cli_now(api.org)
    online = report(api.base_url, tmp_path / "online", "csv", now=now).stdout
    offline = report(f"http://127.0.0.1:{free_port()}/v1", offline_state, "csv", "--offline", now=now).stdout
    assert online == offline


def test_report_without_key_is_a_config_error(tmp_path: Path) -> None:
    """Without a key and without --offline, `report` exits 2 with one line saying which variable to set."""
    result = run_cli(
        "report", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--state-dir", str(tmp_path),
        env={"OPENAI_ADMIN_KEY": ""},
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "openai-cost-exporter: no OpenAI admin key: set OPENAI_ADMIN_KEY or OPENAI_ADMIN_KEY_FILE (an admin key, "
        "sk-admin-..., with the api.usage.read scope), or try `openai-cost-exporter demo`"
    ]


# ---- a corrupt state file -----------------------------------------------------------------------------------


def _garbage(_: Path) -> bytes:
    return b"this is not a database\n" * 300


def _damaged(path: Path) -> bytes:
    """A real state file whose pages after the first are overwritten: the header still says SQLite."""
    conn = open_state(path)
    try:
        rows = [CostRow(dt.date(2026, 1, 1), f"proj_{n:05d}", None, Decimal(n)) for n in range(3000)]
        Ledger(conn).replace_days([dt.date(2026, 1, 1)], rows, dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    finally:
        conn.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    for offset in range(4096, len(data), 4096):
        data[offset + 8 : offset + 1000] = b"\xa5" * 992
    return bytes(data)


@pytest.mark.parametrize("corrupt", [_garbage, _damaged], ids=["garbage", "damaged-pages"])
@pytest.mark.parametrize(
    "command",
    [("run", "--once", "--listen", ""), ("backfill", "--days", "3"), ("report", "--offline")],
    ids=["run", "backfill", "report"],
)
def test_corrupt_state_file_is_one_line_and_left_alone(
    tmp_path: Path, corrupt: Callable[[Path], bytes], command: tuple[str, ...]
) -> None:
    """A state file that is garbage or has damaged pages stops the command with exit 2 (a person must act: no
    restart loop) and one line naming the file, no traceback, and the file is left byte for byte as it was."""
    path = tmp_path / "state.sqlite3"
    content = corrupt(path)
    path.write_bytes(content)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    result = run_cli(*command, "--base-url", dead, "--state-dir", str(tmp_path))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0], result.stderr
    assert "corrupt" in lines[0] or "not a SQLite database" in lines[0]
    assert_clean(result)
    assert path.read_bytes() == content


def scrape_metrics(api: FakeAdminAPI, state: Path, now: dt.datetime, *extra: str) -> dict[str, float]:
    """`run --listen` at `now` until its first cycle is done: its /metrics baseline per project_id."""
    with serving(api.base_url, state, *extra, now=now) as url:
        text = httpx.get(f"{url}metrics", timeout=10).text
    return {
        sample.labels["project_id"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "openai_daily_cost_baseline_usd"
    }


@pytest.mark.parametrize("moment", [SATURDAY_1000, SUNDAY_1300], ids=["saturday", "sunday"])
def test_report_on_a_weekend_shows_the_baseline_of_metrics(tmp_path: Path, moment: dt.datetime) -> None:
    """On a Saturday and a Sunday, `report --format json` shows each project's baseline as /metrics does: the
    median of the weekend days up to four weeks back (it once loaded only 7 days, and the rest counted as $0)."""
    org = FakeOrg.generate(seed=4, project_count=40, clock=FrozenClock(moment))
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api:
        shown = scrape_metrics(api, tmp_path / "live", moment, "--no-usage", "--interval", "3600")
        document = json.loads(report(api.base_url, tmp_path / "report", "json", now=moment).stdout)
    reported = {entry["project_id"]: entry["baseline_usd"] for entry in document["projects"]}
    assert len(shown) > 10 and set(shown) <= set(reported)
    assert {pid: float(Decimal(reported[pid] or 0)) for pid in shown} == pytest.approx(shown, rel=1e-12)
    assert {pid: float(baseline_truth(org, pid)) for pid in shown} == pytest.approx(shown, rel=1e-12)
