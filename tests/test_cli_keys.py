"""Cost per API key and hard spend limits through the CLI: the fake organization on loopback, a real VictoriaMetrics,
a fake Slack webhook. The figures are compared with the fake's own sums (`key_totals`, `api_keys`)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from prometheus_client.parser import text_string_to_metric_families

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import API_KEYS_EPOCH, UNATTRIBUTED, day_start
from openai_cost_exporter.export.collector import day_sample_time
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, clean_env, cli_now, command, run_cli, run_once, tagged
from tests.fake_slack import FakeSlack
from tests.moments import DEFAULT
from tests.stack import VictoriaMetrics, free_port, require_binary, wait_until

VM_REL = 1e-11  # VictoriaMetrics keeps ~12 significant digits (tests/test_cli_history.py)
LISTINGS_TIMEOUT = 60.0  # seconds for the background listings of 40 projects; a few seconds here


@pytest.fixture
def org(now: dt.datetime) -> FakeOrg:
    return FakeOrg.generate(seed=7, project_count=40, clock=FrozenClock(now))


@pytest.fixture
def api(org: FakeOrg) -> Iterator[FakeAdminAPI]:
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as fake:
        yield fake


@pytest.fixture
def afternoon() -> Iterator[FakeAdminAPI]:
    """The fake API of an organization pinned to a weekday afternoon, most of today billed: for the tests about
    today's keys, whatever the calendar run's moment (at 00:20 nothing is billed yet today)."""
    org = FakeOrg.generate(seed=7, project_count=40, clock=FrozenClock(DEFAULT))
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as fake:
        yield fake


def truth_today(org: FakeOrg) -> dict[tuple[str, str], Decimal]:
    """The fake's billed spend of today per (project_id, api_key_id) as the exporter labels them."""
    today = org.clock.now().date()
    return {(pid or UNATTRIBUTED, key or "none"): amount for (pid, key), amount in org.key_totals(today).items()}


@pytest.mark.calendar
def test_keys_pushed_to_victoriametrics_equal_the_fakes_sums(
    api: FakeAdminAPI, org: FakeOrg, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """`run --once --api-keys` pushes today's cost of every key (no cap needed here): each equals the fake's sum,
    spend outside keys is its own `none` series, and the keys of a project add up to the project."""
    run_keys = tagged("keys", org)
    push = ("--push-url", vm.import_url, "--push-label", f"run={run_keys}", "--api-keys-top", "1000", "--no-usage")
    result = run_once(api.base_url, tmp_path, "--api-keys", *push, now=cli_now(org))
    assert result.returncode == 0, result.output
    vm.force_flush()
    got = {
        (s["metric"]["project_id"], s["metric"]["api_key_id"]): float(s["value"][1])
        for s in vm.query(f'openai_daily_api_key_cost_usd{{run="{run_keys}"}}')
    }
    truth = truth_today(org)
    assert set(got) == set(truth)
    for key, amount in truth.items():
        assert got[key] == pytest.approx(float(amount), rel=VM_REL), key
    now = org.clock.now()
    if now - dt.datetime.combine(now.date(), dt.time(), dt.UTC) >= org.cost_lag:  # before, nothing is billed today
        assert any(key_id == "none" for _, key_id in truth)
    live = vm.query(f'openai_daily_cost_usd{{run="{run_keys}"}}')
    projects = {s["metric"]["project_id"]: float(s["value"][1]) for s in live}
    for pid in {pid for pid, _ in truth}:
        summed = sum(amount for (p, _), amount in got.items() if p == pid)
        assert summed == pytest.approx(projects[pid], rel=1e-9), pid
    # Closed days: pushed once at the day's last second, each key on each day (0 where it spent nothing).
    for day in (org.clock.now().date() - dt.timedelta(days=n) for n in (1, 9)):
        stamp = int(day_sample_time(day) * 1000)
        closed = {
            (s["metric"]["project_id"], s["metric"]["api_key_id"]): value
            for s in vm.export(f'openai_daily_api_key_cost_usd{{run="{run_keys}"}}')
            for value, at in zip(s["values"], s["timestamps"], strict=True)
            if at == stamp
        }
        truth = {(pid or UNATTRIBUTED, key or "none"): amount for (pid, key), amount in org.key_totals(day).items()}
        assert {k for k, v in closed.items() if v} == set(truth)
        for key, amount in truth.items():
            assert closed[key] == pytest.approx(float(amount), rel=VM_REL), (day, key)


def test_metrics_cap_the_keys_of_a_project_and_add_up_exactly(afternoon: FakeAdminAPI, tmp_path: Path) -> None:
    """With `--api-keys-top 10`, the 45-key project exports at most 10 keys plus `other` and `none`; for every
    project the exposed key values add up exactly (as decimals) to its `openai_daily_cost_usd`, and
    `promtool check metrics` accepts the page."""
    api, org = afternoon, afternoon.org
    port = free_port()
    args = ["run", "--base-url", api.base_url, "--state-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        command(*args, "--api-keys", "--api-keys-top", "10", "--no-usage", "--interval", "3600"),
        env=clean_env(now=cli_now(org)),
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: b"openai_daily_api_key_cost_usd{" in _get(url), LISTINGS_TIMEOUT, "the first cycle")
        text = _get(url).decode()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    keys: dict[str, list[tuple[str, Decimal]]] = {}
    projects: dict[str, Decimal] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "openai_daily_api_key_cost_usd":
                keys.setdefault(sample.labels["project_id"], []).append(
                    (sample.labels["api_key_id"], Decimal(repr(sample.value)))
                )
            elif sample.name == "openai_daily_cost_usd":
                projects[sample.labels["project_id"]] = Decimal(repr(sample.value))
    many = keys[str(org.many_keys_project_id)]
    assert len([k for k, _ in many if k not in ("other", "none")]) == 10
    assert "other" in {k for k, _ in many}
    assert all(len(series) <= 12 for series in keys.values())
    for pid, series in keys.items():
        assert sum((amount for _, amount in series), Decimal(0)) == projects[pid], pid
    promtool = [require_binary("promtool"), "check", "metrics"]
    check = subprocess.run(promtool, input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def _get(url: str) -> bytes:
    done = subprocess.run(["curl", "-s", url], capture_output=True, check=False)
    return done.stdout


def test_report_by_api_key_names_every_key_and_owner_across_pages(afternoon: FakeAdminAPI, tmp_path: Path) -> None:
    """`report --by api-key` lists the 45 keys of one project (three pages of the key listing) with the names and
    owners OpenAI gives, keeps the id of a key deleted since, and its amounts are the fake's."""
    api, org = afternoon, afternoon.org
    api.faults.key_page_cap = 20  # the client asks 100 a page; the server sends 20
    result = run_cli(
        "report",
        "--by",
        "api-key",
        "--days",
        "1",
        "--format",
        "json",
        "--base-url",
        api.base_url,
        "--state-dir",
        str(tmp_path),
        now=cli_now(org),
    )
    assert result.returncode == 0, result.output
    rows = json.loads(result.stdout)["api_keys"]
    pid = str(org.many_keys_project_id)
    mine = {row["api_key_id"]: row for row in rows if row["project_id"] == pid}
    listed = {key.id: key for key in org.api_keys(pid)}
    deleted = [key for key in org.all_api_keys(pid) if key.deleted]
    truth = {key_id: amount for (p, key_id), amount in truth_today(org).items() if p == pid}
    assert set(mine) == set(truth)
    for key_id, row in mine.items():
        assert Decimal(row["total_usd"]) == truth[key_id]
        if key_id in listed:
            key = listed[key_id]
            assert row["api_key"] == key.name
            assert key.owner.name in row["owner"]
    for key in deleted:
        if key.id in mine:
            assert mine[key.id]["api_key"] == key.id and mine[key.id]["owner"] == ""
    assert api.request_counts()[f"/v1/organization/projects/{pid}/api_keys"] == 3  # 45 keys at 20 a page
    assert ADMIN_KEY not in result.output
    before = len(api.request_log)
    offline = run_cli(
        "report", "--by", "api-key", "--days", "1", "--format", "json", "--offline", "--state-dir", str(tmp_path),
        now=cli_now(org),
    )  # fmt: skip
    assert offline.returncode == 0, offline.output
    assert json.loads(offline.stdout)["api_keys"] == json.loads(result.stdout)["api_keys"]  # names from the state
    assert len(api.request_log) == before


@pytest.mark.calendar
def test_a_project_near_its_hard_limit_gets_one_message_with_the_days_left(
    api: FakeAdminAPI, org: FakeOrg, tmp_path: Path
) -> None:
    """The project at 85% of its hard limit (cents, from the fake) gets exactly one limit message, saying when the
    limit is reached at the recent pace; far-from-limit projects and projects without a limit get none; once
    every listing is stored a cycle makes no listing request."""
    near, far = str(org.near_limit_project_id), set(org.far_limit_project_ids)
    with FakeSlack() as slack:

        def cycle() -> str:
            result = run_once(
                api.base_url,
                tmp_path,
                "--no-usage",
                "--api-keys",
                env={"SLACK_WEBHOOK_URL": slack.url},
                now=cli_now(org),
            )
            assert result.returncode == 0, result.output
            assert slack.url not in result.output
            return result.stderr

        first = cycle()  # lists keys and limits in the background, and waits for them once its figures are out
        assert "still in the background" not in first
        cycle()  # judges the limits the first run stored
        before = api.request_counts()
        assert "listings in the background" not in cycle()  # warm: names and limits are fresh
        after = api.request_counts()
        assert not [p for p in after if p.endswith(("/api_keys", "/spend_limit")) and after[p] != before.get(p)]
        limit_posts = [p for p in slack.posts if "hard spend limit" in p.body["text"].lower()]
    near_posts = [p for p in limit_posts if near in p.body["text"]]
    if not org.month_to_date(near):  # the 1st before its first billing: 0% of the limit, nothing is near
        assert not [p for p in near_posts if "Near the hard spend limit" in p.body["text"]]
        return
    assert len(near_posts) == 1, [p.body["text"] for p in limit_posts]
    fields = json.dumps(near_posts[0].body["blocks"])
    assert "Near the hard spend limit" in fields and "85% this month" in fields and "OpenAI stops serving" in fields
    assert when_the_limit_is_reached(org, near) in fields
    assert not [p for p in limit_posts if any(pid in p.body["text"] for pid in far)]
    subjects = {pid for pid in (near, org.limit_reached_project_id) if pid}
    without = [p.id for p in org.projects if p.id not in far and p.id not in subjects]
    assert not [p for p in limit_posts if any(pid in p.body["text"] for pid in without)]


def test_a_backfill_across_the_key_epoch_goes_by_key_after_it_and_by_project_before(
    vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """`backfill --api-keys` over a window that starts before 2025-12-06 succeeds: one line says where keys begin,
    no request by key starts before it, the days after it carry key series equal to the fake's and the days
    before it only project series. The moment and the window derive from the epoch, not from the real date."""
    now = dt.datetime.combine(API_KEYS_EPOCH + dt.timedelta(days=20), dt.time(13), dt.UTC)
    org = FakeOrg.generate(seed=7, project_count=40, clock=FrozenClock(now))
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api:
        _backfill_across_the_epoch(api, org, vm, tmp_path)


def _backfill_across_the_epoch(api: FakeAdminAPI, org: FakeOrg, vm: VictoriaMetrics, tmp_path: Path) -> None:
    days = (org.clock.now().date() - API_KEYS_EPOCH).days + 10  # ten days of the window are before the epoch
    result = run_cli(
        "backfill",
        "--days",
        str(days),
        "--api-keys",
        "--api-keys-top",
        "1000",
        "--base-url",
        api.base_url,
        "--state-dir",
        str(tmp_path),
        "--push-url",
        vm.import_url,
        "--push-label",
        "run=epoch",
        now=cli_now(org),
    )
    assert result.returncode == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "2025-12-06" in line]
    assert len(lines) == 1 and "by project only" in lines[0], result.stderr
    by_key = [query for path, query in api.request_log if path.endswith("/costs") and "api_key_id" in query]
    assert by_key and min(int(parse_qs(q)["start_time"][0]) for q in by_key) == day_start(API_KEYS_EPOCH)
    vm.force_flush()
    stamps: dict[int, set[tuple[str, str]]] = {}
    for series in vm.export('openai_daily_api_key_cost_usd{run="epoch"}'):
        for at in series["timestamps"]:
            stamps.setdefault(at, set()).add((series["metric"]["project_id"], series["metric"]["api_key_id"]))
    after, before = API_KEYS_EPOCH + dt.timedelta(days=3), API_KEYS_EPOCH - dt.timedelta(days=1)
    assert int(day_sample_time(before) * 1000) not in stamps
    truth = {(pid or UNATTRIBUTED, key or "none") for (pid, key), _ in org.key_totals(after).items()}
    assert truth <= stamps[int(day_sample_time(after) * 1000)]
    projects = vm.export('openai_daily_cost_usd{run="epoch"}')
    assert any(int(day_sample_time(before) * 1000) in series["timestamps"] for series in projects)


def when_the_limit_is_reached(org: FakeOrg, project_id: str) -> str:
    """What the limit message says of when, from the fake's figures: "in about" while the recent pace (the mean of
    the last 7 closed days) reaches the limit before the month ends, "not this month" when it starts again first."""
    now = org.clock.now()
    today = now.date()
    pace = sum((org.daily_total(today - dt.timedelta(days=n), project_id) for n in range(1, 8)), Decimal(0)) / 7
    cents, _ = org.spend_limit(project_id) or (0, "")
    days = (Decimal(cents) / 100 - org.month_to_date(project_id)) / pace
    month_end = dt.datetime.combine((today.replace(day=1) + dt.timedelta(days=32)).replace(day=1), dt.time(), dt.UTC)
    left = Decimal((month_end - now) / dt.timedelta(days=1))
    assert abs(days - left) > Decimal("0.5"), "a moment too close to call: pick another"
    return "in about" if days < left else "not this month"


def test_the_first_run_once_is_complete_keys_named_and_limits_judged(
    afternoon: FakeAdminAPI, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    """A cron user's first `run --once --api-keys` waits for its listings before its figures: every key series it
    pushes carries the key's name (never the id of a listed key, which would become a second series later), the
    project at 85% of its hard limit gets its message from this first run, each project's keys are listed once,
    and a second run sends nothing more."""
    api, org = afternoon, afternoon.org
    run_tag = tagged("first-run", org)
    push = ("--push-url", vm.import_url, "--push-label", f"run={run_tag}", "--api-keys-top", "1000", "--no-usage")
    with FakeSlack() as slack:
        env = {"SLACK_WEBHOOK_URL": slack.url}
        first = run_once(api.base_url, tmp_path, "--api-keys", *push, env=env, now=cli_now(org))
        assert first.returncode == 0, first.output
        listings = {p: n for p, n in api.request_counts().items() if p.endswith("/api_keys")}
        near_posts = [p for p in slack.posts if "Near the hard spend limit" in p.body["text"]]
        said_first = len(slack.posts)
        second = run_once(api.base_url, tmp_path, "--api-keys", *push, env=env, now=cli_now(org))
        assert second.returncode == 0, second.output
        said_second = len(slack.posts) - said_first
    assert listings and set(listings.values()) == {1}, listings  # one listing per project, whoever asked
    assert len(near_posts) == 1 and str(org.near_limit_project_id) in near_posts[0].body["text"]
    assert said_second == 0
    vm.force_flush()
    names = {key.id: key.name for project in org.projects for key in org.api_keys(project.id)}
    series = {
        (s["metric"]["api_key_id"], s["metric"]["api_key"])
        for s in vm.export(f'openai_daily_api_key_cost_usd{{run="{run_tag}"}}')
    }
    listed = [(key_id, label) for key_id, label in series if key_id in names]
    assert listed and all(label == names[key_id] for key_id, label in listed), listed
