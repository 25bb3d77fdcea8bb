"""The `demo` and `fake-api` commands as a user runs them: separate processes, real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.clirun import ADMIN_KEY, clean_env, command
from tests.stack import free_port, wait_until

SPIKE_NAME = "Search Reranker"
START_TIMEOUT = 30.0  # seconds; the demo is ready after ~1 s on the CI machine
STOP_TIMEOUT = 5.0  # seconds a SIGTERM may take (one cycle at most, plus the HTTP server's shutdown)


@dataclass
class Running:
    """A CLI process whose stdout and stderr go to files (read while it runs, no pipe to fill)."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        """Exit code and output so far, for failure messages."""
        return f"exit code {self.process.poll()}\n--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"

    def wait_for_output(self, needle: str, stream: str = "stderr") -> None:
        """Wait (bounded) until `needle` appears on the stream; fail at once if the process exits."""

        def seen() -> bool:
            assert self.process.poll() is None, f"exited early: {self.describe()}"
            return needle in getattr(self, stream)()

        wait_until(seen, START_TIMEOUT, f"{needle!r} on {stream}", self.describe)

    def terminate(self) -> float:
        """SIGTERM; return the seconds until the process exited (fail if it takes longer than STOP_TIMEOUT)."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within {STOP_TIMEOUT} s of SIGTERM\n{self.describe()}")
        return time.monotonic() - sent


@contextlib.contextmanager
def cli_process(tmp_path: Path, *args: str, now: dt.datetime | None = None) -> Iterator[Running]:
    """Start the CLI with `args` in a clean environment (no Slack webhook), its clock at `now` if given; kill it if
    a test left it running."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command(*args), stdout=stdout, stderr=stderr, env=clean_env(now=now))
    running = Running(process, out, err)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def http_get(url: str, **kwargs: Any) -> httpx.Response:
    """GET on loopback, ignoring any proxy settings of the environment."""
    return httpx.get(url, timeout=5, trust_env=False, **kwargs)


def wait_ready(url: str, running: Running) -> None:
    """Wait (bounded) for `url` to answer 200."""

    def ready() -> bool:
        assert running.process.poll() is None, f"exited early: {running.describe()}"
        with contextlib.suppress(httpx.TransportError):
            return http_get(url).status_code == 200
        return False

    wait_until(ready, START_TIMEOUT, url, running.describe)


@dataclass(frozen=True)
class ProjectSpend:
    project_id: str
    today: float
    baseline: float


def spend_by_name(metrics_text: str) -> dict[str, ProjectSpend]:
    """Today's cost and baseline of every project in /metrics, by project name."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name in {"openai_daily_cost_usd", "openai_daily_cost_baseline_usd"}:
            for sample in family.samples:
                key = (sample.labels["project"], sample.labels["project_id"])
                values.setdefault(key, {})[family.name] = sample.value
    return {
        name: ProjectSpend(pid, v["openai_daily_cost_usd"], v["openai_daily_cost_baseline_usd"])
        for (name, pid), v in values.items()
    }


def fraction_of_utc_day(now: dt.datetime) -> float:
    return (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() / 86_400


def demo_now() -> dt.datetime:
    """15:00 UTC of a Wednesday, the demo's clock (simulated organization and exporter in one process), frozen: the
    spike is past its noon floor (fake.org.SPIKE_MIN_PARTIAL)."""
    return dt.datetime(2026, 11, 25, 15, tzinfo=dt.UTC)


def demo_args(*extra: str) -> list[str]:
    return ["demo", "--port", str(free_port()), "--projects", "30", "--interval", "5", *extra]


def test_demo_serves_page_and_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`demo` prints its banner, becomes ready, serves a spend page with bars and the Search Reranker row and
    /metrics whose Search Reranker runs at 4x its baseline's pace, and exits 0 soon after SIGTERM."""
    args, now = demo_args(), demo_now()
    url = f"http://127.0.0.1:{args[2]}"
    with cli_process(tmp_path, *args, now=now) as demo:
        demo.wait_for_output(f"spend page   {url}/", "stdout")
        wait_ready(f"{url}/readyz", demo)
        demo.wait_for_output("cycle ok")
        page = http_get(f"{url}/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<svg class="chart"' in page.text and page.text.count("<rect ") >= 7  # a week of bars at least
        assert f'<td>{SPIKE_NAME}<div class="keys">top keys today: ' in page.text  # it alerts: its keys show
        metrics = http_get(f"{url}/metrics").text
        costs = spend_by_name(metrics)
        assert len(costs) >= 20
        # The simulated spike: 4x the usual pace (fake/org.py); the baseline is what the project usually has spent
        # by this hour (its flat usage profile gives the share of the day). The steady noise (+/-8%) bounds it.
        reranker = costs[SPIKE_NAME]
        assert 4 * 0.8 <= reranker.today / reranker.baseline <= 4 * 1.25, reranker
        stopped_in = demo.terminate()
    assert demo.process.returncode == 0, demo.describe()
    assert "received SIGTERM, stopping" in demo.stderr()
    assert "Traceback" not in demo.stderr() and ADMIN_KEY not in demo.stdout() + demo.stderr()
    print(f"demo stopped {stopped_in:.2f} s after SIGTERM")


def test_demo_logs_the_spike_alert_without_a_webhook(tmp_path: Path) -> None:
    """Without SLACK_WEBHOOK_URL the demo writes the Search Reranker spike alert to its log, and the spend page
    shows the project's alert state."""
    # Default thresholds: the simulated runaway is at 2x its baseline or more at any hour of the UTC day; at the
    # demo's 15:00 no cycle sees another day (a second alert) or a doubling (an escalation).
    args = demo_args()
    url = f"http://127.0.0.1:{args[2]}"
    with cli_process(tmp_path, *args, now=demo_now()) as demo:
        demo.wait_for_output("cycle ok")
        project_id = spend_by_name(http_get(f"{url}/metrics").text)[SPIKE_NAME].project_id
        demo.wait_for_output(f"spike alert for {project_id}")
        row = re.search(rf'<tr data-project-id="{project_id}">.*?</tr>', http_get(f"{url}/").text)
        assert row and '<span class="badge">spike' in row.group(0), row
        demo.terminate()
    assert demo.process.returncode == 0, demo.describe()
    alert_lines = [line for line in demo.stderr().splitlines() if f"spike alert for {project_id}" in line]
    assert len(alert_lines) == 1 and " WARNING " in alert_lines[0]


def test_fake_api_prints_its_url_and_serves_projects_with_the_key(tmp_path: Path) -> None:
    """`fake-api --port 0` prints its base URL and serves /organization/projects only to the configured key, and
    exits 0 on SIGTERM."""
    key = "sk-admin-fake-for-this-test-0123"
    with cli_process(tmp_path, "fake-api", "--port", "0", "--projects", "12", "--key", key) as fake:
        fake.wait_for_output("fake OpenAI Admin API on http://127.0.0.1:", "stdout")
        found = re.search(r"on (http://127\.0\.0\.1:\d+/v1) ", fake.stdout())
        assert found, fake.describe()
        projects_url = f"{found.group(1)}/organization/projects"
        response = http_get(
            projects_url,
            params={"limit": "100", "include_archived": "true"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "list" and body["has_more"] is False
        assert len(body["data"]) == 12 and all(p["id"].startswith("proj_") for p in body["data"])
        assert any(p["status"] == "archived" for p in body["data"])
        assert http_get(projects_url).status_code == 401
        wrong = http_get(projects_url, headers={"Authorization": "Bearer sk-admin-wrong-key-000000000"})
        assert wrong.status_code == 401
        fake.terminate()
    assert fake.process.returncode == 0, fake.describe()


@pytest.mark.calendar
def test_the_demo_alerts_only_for_its_spiking_and_runaway_projects(tmp_path: Path, now: dt.datetime) -> None:
    """At any moment of the calendar (weekend, midnight, month and year ends), the demo's first two cycles alert
    for its spiking project, its runaway and its hard-limit projects, and for no ordinary project."""
    args = demo_args()
    url = f"http://127.0.0.1:{args[2]}"
    with cli_process(tmp_path, *args, now=now) as demo:
        demo.wait_for_output("cycle ok")
        names = {spend.project_id: name for name, spend in spend_by_name(http_get(f"{url}/metrics").text).items()}
        wait_until(lambda: demo.stderr().count("cycle ok") >= 2, START_TIMEOUT, "a second cycle", demo.describe)
        demo.terminate()
    alerted = re.findall(r"(\w+) alert for (proj_\w+|organization)", demo.stderr())
    assert ("spike", names_to_id(names, SPIKE_NAME)) in alerted and (
        "runaway",
        names_to_id(names, "Agent Loop"),
    ) in alerted
    ordinary = [(rule, names.get(pid, pid)) for rule, pid in alerted if rule != "spend_limit"]
    assert {name for _, name in ordinary} == {SPIKE_NAME, "Agent Loop"}, ordinary


def names_to_id(names: dict[str, str], name: str) -> str:
    return next(pid for pid, known in names.items() if known == name)
