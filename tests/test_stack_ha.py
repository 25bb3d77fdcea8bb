"""Two replicas, one message: the high-availability deployment of the README, with the real binaries.

Two exporter processes (the CLI's `run`, export-only: no Slack webhook, so the built-in engine only logs) push the
same series into one VictoriaMetrics; one vmalert evaluates the shipped rules and sends every alert to both of two
Alertmanagers clustered by gossip on 127.0.0.1 (shipped config, test timings); they post to one fake Slack.
Each test spikes a project of its own and expects exactly one Slack message for it, and never any title twice,
with both replicas of everything, or after a replica of either kind is killed (SIGKILL, a crash).
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg, FakeProject
from tests.clirun import ADMIN_KEY, baseline_of, clean_env, cli_now, command, set_today
from tests.ha_stack import (
    PEER_TIMEOUT_SECONDS,
    AlertmanagerCluster,
    Replicas,
    ServiceSpec,
    alertmanager_cluster,
    replicas,
)
from tests.moments import WEDNESDAY_2000
from tests.stack import (
    FakeSlack,
    Service,
    StackError,
    VictoriaMetrics,
    bound_addresses,
    fake_slack,
    free_port,
    http_ready,
    victoria_metrics,
    vmalert,
    wait_until,
    write_alertmanager_config,
)

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "rules" / "openai-cost-exporter.rules.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
EXPORTERS = ("exporter-a", "exporter-b")
TIMEOUT = 20.0  # seconds for an expected Slack post: an exporter cycle, an evaluation, up to 2 peer timeouts
#: A duplicate can only come from the member next in the cluster, one peer timeout after both got the alert from
#: vmalert (group_wait 0s): nothing to poll says "it will not come", so that window (and a second) is waited out.
QUIET = PEER_TIMEOUT_SECONDS + 1.0

pytestmark = pytest.mark.stack


@dataclass
class HAStack:
    """The running high-availability stack."""

    slack: FakeSlack
    vm: VictoriaMetrics
    vmalert: Service
    alertmanagers: AlertmanagerCluster
    exporters: Replicas

    def processes(self) -> list[Service]:
        """Every process running now."""
        replicas = [*self.alertmanagers.replicas.running(), *self.exporters.running()]
        return [self.slack.service, self.vm.service, self.vmalert, *replicas]

    def log_tails(self) -> str:
        """Log tails of every process (killed replicas included) and the Slack titles so far, for failures."""
        logs = [self.vm.service, self.vmalert]
        tails = "\n".join(
            [*(s.log_tail() for s in logs), self.alertmanagers.replicas.log_tails(), self.exporters.log_tails()]
        )
        return f"{tails}\n--- Slack titles so far ---\n{self.slack.titles()}"


@pytest.fixture(scope="module")
def org() -> FakeOrg:
    """A fake organization frozen at 20:00 UTC of a weekday, without the built-in spiking project."""
    return FakeOrg.generate(seed=3, project_count=25, clock=FrozenClock(WEDNESDAY_2000), spike_project=False)


@pytest.fixture(scope="module")
def api(org: FakeOrg) -> Iterator[FakeAdminAPI]:
    """The fake OpenAI Admin API serving `org` on 127.0.0.1, to both exporters."""
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def quiet_projects(org: FakeOrg) -> Iterator[FakeProject]:
    """Active projects with a plain name (an exact Slack title) and a baseline over the 1 USD floor, one per test."""
    return iter(
        p
        for p in org.projects
        if not p.archived and p.name and re.fullmatch(r"[A-Za-z ]+", p.name) and baseline_of(org, p.id) > 2
    )


def exporter(name: str, workdir: Path, api: FakeAdminAPI, vm: VictoriaMetrics, org: FakeOrg) -> ServiceSpec:
    """One export-only replica: its own state directory, a cycle a second, no Slack webhook (clean_env drops it)."""
    port = free_port()
    argv = command(
        "run",
        *("--base-url", api.base_url, "--state-dir", str(workdir / name), "--listen", f"127.0.0.1:{port}"),
        *("--push-url", vm.import_url, "--interval", "1", "--no-usage"),
    )
    ready = http_ready(f"http://127.0.0.1:{port}/readyz")  # ready after its first successful cycle
    env = clean_env({"OPENAI_COST_EXPORTER_REPLICA": name}, now=cli_now(org))  # its own metrics, as the overlay's
    return ServiceSpec(name, argv, port, workdir / f"{name}.log", ready, env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, org: FakeOrg, api: FakeAdminAPI) -> Iterator[HAStack]:
    """The whole stack, started once for this module; a test that kills a replica leaves it to the next to restart."""
    workdir = tmp_path_factory.mktemp("ha")
    with contextlib.ExitStack() as started:
        slack = started.enter_context(fake_slack(workdir))
        vm = started.enter_context(victoria_metrics(workdir))
        config = write_alertmanager_config(ALERTMANAGER_CONFIG, workdir / "alertmanager.yml", slack.webhook_url)
        cluster = started.enter_context(alertmanager_cluster(workdir, config))
        alerts = started.enter_context(vmalert(workdir, RULES, vm.url, *cluster.urls))
        exporters = started.enter_context(replicas([exporter(name, workdir, api, vm, org) for name in EXPORTERS]))
        vm.force_flush()  # the first pushes created the series: searchable now, not in 4-10 s (monitoring-stack.md §2)
        yield HAStack(slack, vm, alerts, cluster, exporters)


@pytest.fixture
def ha(stack: HAStack) -> HAStack:
    """The stack with every replica running: one a previous test killed is started again (same ports and data)."""
    stack.exporters.start()
    stack.alertmanagers.replicas.start()
    stack.alertmanagers.wait_settled()
    return stack


def spike(ha: HAStack, org: FakeOrg, project: FakeProject) -> dict[str, object]:
    """Put `project` at 4x its baseline in the fake; wait for its FIRING post (the exporters' next cycles push it)."""
    set_today(org, project.id, 4 * baseline_of(org, project.id))
    return ha.slack.wait_for_title(f"FIRING: OpenAICostSpike in {project.name}", TIMEOUT, ha.log_tails)


def assert_every_message_once(ha: HAStack) -> None:
    """Wait out the QUIET window (ending early on a duplicate), then: no Slack title was ever posted twice."""

    def duplicated() -> bool:
        return any(count > 1 for count in Counter(ha.slack.titles()).values())

    with contextlib.suppress(StackError):  # the window passing without a duplicate is the expected outcome
        wait_until(duplicated, QUIET, "a duplicate Slack post")
    twice = {title: count for title, count in Counter(ha.slack.titles()).items() if count > 1}
    assert twice == {}, f"posted more than once: {twice}\n{ha.log_tails()}"


def test_every_process_listens_only_on_loopback(ha: HAStack) -> None:
    """Each process, the Alertmanagers' gossip (TCP and UDP) included, has sockets bound only to 127.0.0.1."""
    for service in ha.processes():
        assert bound_addresses(service.process.pid) == {"127.0.0.1"}, service.name


def test_two_replicas_of_everything_send_one_message(
    ha: HAStack, org: FakeOrg, quiet_projects: Iterator[FakeProject]
) -> None:
    """Both exporters push the spike as one series, both Alertmanagers get it, Slack gets one message with one line;
    each exporter's built-in engine saw it too and only logged it."""
    project = next(quiet_projects)
    firing = spike(ha, org, project)
    assert str(firing["text"]).count(f"*{project.name}* (`{project.id}`)") == 1  # one alert, not one per replica
    assert_every_message_once(ha)
    [series] = ha.vm.export(f'openai_daily_cost_usd{{project_id="{project.id}"}}')
    assert set(series["metric"]) == {"__name__", "job", "project", "project_id"}  # no per-replica label
    # The exporters' own metrics are each replica's: a counter of one is not read as a reset of the other's.
    own = ha.vm.export("openai_cost_exporter_last_success_timestamp_seconds")
    assert {s["metric"].get("replica") for s in own} == set(EXPORTERS)
    for service in ha.exporters.running():
        assert f"alert for {project.id}" in service.log_path.read_text(encoding="utf-8"), service.name


@pytest.mark.parametrize("killed", EXPORTERS)
def test_one_message_after_an_exporter_is_killed(
    ha: HAStack, org: FakeOrg, quiet_projects: Iterator[FakeProject], killed: str
) -> None:
    """With either exporter killed, the other one's pushes alone bring a new spike to Slack, once."""
    ha.exporters.kill(killed)
    project = next(quiet_projects)
    spike(ha, org, project)
    assert_every_message_once(ha)


@pytest.mark.parametrize("role", ["sender", "waiter"])
def test_one_message_after_an_alertmanager_is_killed(
    ha: HAStack, org: FakeOrg, quiet_projects: Iterator[FakeProject], role: str
) -> None:
    """With either Alertmanager killed (the one at cluster position 0 that notifies at once, or the one that waits
    a peer timeout), the survivor posts a new spike to Slack, once; a restarted member re-sends nothing."""
    sender = ha.alertmanagers.sender()
    (killed,) = [s.name for s in ha.alertmanagers.replicas.running() if (s.name == sender) == (role == "sender")]
    ha.alertmanagers.replicas.kill(killed)
    project = next(quiet_projects)
    spike(ha, org, project)
    assert_every_message_once(ha)
