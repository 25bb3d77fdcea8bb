"""Built-in Slack alerts through the CLI: fake OpenAI organization and a fake Slack webhook, both on loopback."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, baseline_of, clean_env, cli_now, command, run_once, set_today
from tests.fake_slack import FakeSlack
from tests.stack import wait_until

START_TIMEOUT = 30.0  # seconds until the first cycle is done; about 1 s on the CI machine


class Scenario:
    """Three watched projects: A at 4x its baseline, B at 1.2x, C at 12x but under the 1 USD floor."""

    def __init__(self, org: FakeOrg) -> None:
        spending = [p for p in org.projects if p.daily_usd > 0 and p.id != org.spike_project_id and not p.archived]
        by_level = sorted(spending, key=lambda p: baseline_of(org, p.id))
        self.org = org
        self.small = next(p for p in by_level if Decimal("0.01") < baseline_of(org, p.id) < Decimal("0.08"))
        big = [p for p in by_level if baseline_of(org, p.id) > 2]
        self.spiking, self.steady = big[0], big[1]
        self.apply()

    def apply(self) -> None:
        """Set today's spend of the three projects (again on a later day of the clock)."""
        org = self.org
        set_today(org, self.spiking.id, 4 * baseline_of(org, self.spiking.id))
        set_today(org, self.steady.id, Decimal("1.2") * baseline_of(org, self.steady.id))
        set_today(org, self.small.id, 12 * baseline_of(org, self.small.id))

    def config(self, path: Path) -> Path:
        ids = ", ".join(f'"{p.id}"' for p in (self.spiking, self.steady, self.small))
        path.write_text(f"[alerts]\ninclude = [{ids}]\norganization = false\n", encoding="utf-8")
        return path


@pytest.fixture
def org(now: dt.datetime) -> FakeOrg:
    return FakeOrg.generate(seed=5, project_count=60, clock=FrozenClock(now), spike_project=False)


@pytest.fixture
def api(org: FakeOrg) -> Iterator[FakeAdminAPI]:
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as fake:
        yield fake


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def _cycle(api: FakeAdminAPI, state: Path, config: Path, slack: FakeSlack, *extra: str) -> None:
    result = run_once(
        api.base_url,
        state,
        "--config",
        str(config),
        "--notify-backoff",
        "0",
        "--no-usage",  # the billed spike path, as for a key without usage access (the runaway has its own tests)
        *extra,
        env={"SLACK_WEBHOOK_URL": slack.url},
        now=cli_now(api.org),
    )
    assert "Traceback" not in result.output, result.output
    assert slack.url not in result.output and "XXXXSECRETXXXX" not in result.output
    assert ADMIN_KEY not in result.output


@pytest.mark.calendar
def test_spike_is_announced_once_then_on_escalation(
    api: FakeAdminAPI, org: FakeOrg, slack: FakeSlack, tmp_path: Path
) -> None:
    """4x gets one message; a second cycle and a restart send nothing; the next day of the same change sends
    nothing (one incident), and doubling again sends one more; 1.2x and 12x-under-the-floor never send anything."""
    scenario = Scenario(org)
    config = scenario.config(tmp_path / "alerts.toml")
    state = tmp_path / "state"
    _cycle(api, state, config, slack)
    assert len(slack.posts) == 1
    message = slack.posts[0].body
    assert scenario.spiking.id in str(message["blocks"]) and "4.0×" in str(message["blocks"])
    assert message["text"]
    _cycle(api, state, config, slack)  # same day, new process: a restart too
    _cycle(api, state, config, slack)
    assert len(slack.posts) == 1
    assert isinstance(org.clock, FrozenClock)
    org.clock.current += dt.timedelta(days=1)  # the next day: the same change goes on
    scenario.apply()
    _cycle(api, state, config, slack)
    assert len(slack.posts) == 1
    set_today(org, scenario.spiking.id, 9 * baseline_of(org, scenario.spiking.id))  # over 2x (set_today rounds)
    _cycle(api, state, config, slack)
    assert len(slack.posts) == 2
    assert "Escalation" in str(slack.posts[1].body)
    _cycle(api, state, config, slack)
    assert len(slack.posts) == 2
    texts = str([post.body for post in slack.posts])
    assert scenario.steady.id not in texts and scenario.small.id not in texts


def test_slack_outage_delivers_exactly_once_after_recovery(
    api: FakeAdminAPI, org: FakeOrg, slack: FakeSlack, tmp_path: Path
) -> None:
    """Slack answering 500 keeps the message pending across cycles; once Slack recovers it arrives once."""
    config = Scenario(org).config(tmp_path / "alerts.toml")
    state = tmp_path / "state"
    slack.fail_next(4, status=500)
    _cycle(api, state, config, slack)
    _cycle(api, state, config, slack)
    assert slack.posts == [] and len(slack.requests) == 4  # two tries per cycle (one in-call retry)
    _cycle(api, state, config, slack)
    assert len(slack.posts) == 1
    _cycle(api, state, config, slack)
    assert len(slack.posts) == 1


def test_slack_hanging_on_its_first_3_posts_gets_the_alert_on_the_4th_run(
    api: FakeAdminAPI, org: FakeOrg, slack: FakeSlack, tmp_path: Path
) -> None:
    """Slack holding its first 3 posts without an answer (one per `run --once`, each in doubt and never given up):
    the 4th run posts the alert, by the one request Slack answered, and exits 0 (issue 21)."""
    config = Scenario(org).config(tmp_path / "alerts.toml")
    slack.hang_next(3, seconds=30)
    args = ("--config", str(config), "--notify-backoff", "0", "--no-usage", "--request-timeout", "1")
    env = {"SLACK_WEBHOOK_URL": slack.url}
    codes = [run_once(api.base_url, tmp_path / "state", *args, env=env, now=cli_now(api.org)) for _ in range(4)]
    assert [r.returncode for r in codes] == [1, 1, 1, 0], codes[-1].output
    assert [r.answered for r in slack.requests] == [False, False, False, True]
    assert len(slack.posts) == 1
    assert "giving up" not in "".join(r.output for r in codes)


def test_run_once_with_a_message_still_pending_exits_1(
    api: FakeAdminAPI, org: FakeOrg, slack: FakeSlack, tmp_path: Path
) -> None:
    """`run --once` whose alert Slack did not take exits 1 and says so in its last line; once sent, it exits 0."""
    config = Scenario(org).config(tmp_path / "alerts.toml")
    slack.fail_next(2, status=500)  # both tries of the first cycle
    args = ("--config", str(config), "--notify-backoff", "0", "--no-usage")
    env = {"SLACK_WEBHOOK_URL": slack.url}
    failed = run_once(api.base_url, tmp_path / "state", *args, env=env, now=cli_now(api.org))
    assert failed.returncode == 1, failed.output
    assert slack.posts == []
    last = failed.stderr.strip().splitlines()[-1]
    assert "1 message(s) still pending" in last and "exiting 1" in last
    delivered = run_once(api.base_url, tmp_path / "state", *args, env=env, now=cli_now(api.org))
    assert delivered.returncode == 0, delivered.output
    assert len(slack.posts) == 1
    assert slack.url not in failed.output + delivered.output


@pytest.mark.calendar
def test_without_webhook_alerts_go_to_the_log(api: FakeAdminAPI, org: FakeOrg, tmp_path: Path) -> None:
    """With no SLACK_WEBHOOK_URL the spike is written to the log instead, so the demo shows it."""
    scenario = Scenario(org)
    result = run_once(
        api.base_url, tmp_path / "state", "--config", str(scenario.config(tmp_path / "a.toml")), now=cli_now(api.org)
    )
    assert result.returncode == 0, result.output
    assert "spike alert for " + scenario.spiking.id in result.stderr


def test_alert_latency_of_the_built_in_path(api: FakeAdminAPI, org: FakeOrg, slack: FakeSlack, tmp_path: Path) -> None:
    """A spend jump reaches Slack within one poll interval plus 2 s; the measured latency is printed."""
    scenario = Scenario(org)
    set_today(org, scenario.spiking.id, baseline_of(org, scenario.spiking.id))  # calm at first
    interval = 2.0
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:  # a file, not a pipe: read with a deadline, never blocks
        proc = subprocess.Popen(
            command(
                "run",
                "--base-url",
                api.base_url,
                "--state-dir",
                str(tmp_path / "state"),
                "--listen",
                "",
                "--interval",
                str(interval),
                "--config",
                str(scenario.config(tmp_path / "a.toml")),
            ),
            env=clean_env({"SLACK_WEBHOOK_URL": slack.url}, now=cli_now(org)),
            stderr=err,
        )

    def calm_cycle_done() -> bool:
        assert proc.poll() is None, f"the exporter exited early with {proc.returncode}:\n{log.read_text()}"
        return "cycle ok" in log.read_text(encoding="utf-8", errors="replace")

    try:
        wait_until(calm_cycle_done, START_TIMEOUT, "the first cycle", lambda: log.read_text(errors="replace"))
        jumped = time.monotonic()
        set_today(org, scenario.spiking.id, 5 * baseline_of(org, scenario.spiking.id))
        slack.wait_for(1, timeout=interval + 10)
        latency = time.monotonic() - jumped
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    print(f"built-in alert latency: {latency:.2f} s (poll interval {interval:g} s)")
    assert latency <= interval + 2
