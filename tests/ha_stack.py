"""The real stack twice over, for the high-availability tests: replicas that can be killed and started again.

Two exporter replicas push the same series into one VictoriaMetrics; one vmalert notifies two Alertmanagers
clustered by gossip on 127.0.0.1; one fake Slack. Built from tests/stack.py's pieces::

    with alertmanager_cluster(workdir, config) as cluster, vmalert(workdir, rules, vm.url, *cluster.urls):
        cluster.replicas.kill(cluster.sender())
        cluster.replicas.start()       # again, on its own ports and data directory
        cluster.wait_settled()

Why the gossip flags differ from a deployment's: see `alertmanager_cluster`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.stack import (
    START_TIMEOUT,
    Service,
    StackError,
    free_port,
    http_ready,
    require_binary,
    wait_until,
)

#: Alertmanager's gossip settles after 3 polls 10 gossip intervals apart: 6 s with the default 200ms, 0.6 s here.
GOSSIP_INTERVAL = "20ms"
#: How long the Alertmanager at cluster position n waits (n times this) before it notifies, unless the notification
#: log gossiped by the one before it says that one did. The default is 15 s; on loopback the log arrives in ms.
PEER_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one replica, kept so that a killed one starts again on the same ports and data."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    ready: Callable[[], bool]
    env: Mapping[str, str] | None = None


@dataclass
class Replicas:
    """Processes started together and waited for together; each can be killed (SIGKILL: a crash) on its own."""

    specs: dict[str, ServiceSpec]
    services: dict[str, Service] = field(default_factory=dict)

    def start(self) -> None:
        """Start every replica not running (all at once), and wait (bounded) until each is ready."""
        starting = [spec for name, spec in self.specs.items() if not self.is_running(name)]
        for spec in starting:
            with spec.log_path.open("ab") as log:  # appended: a restarted replica keeps its earlier lines
                process = subprocess.Popen(
                    spec.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=spec.env
                )
            self.services[spec.name] = Service(spec.name, spec.port, process, spec.log_path)
        for spec in starting:
            self._await(spec)

    def _await(self, spec: ServiceSpec) -> None:
        process = self.services[spec.name].process
        try:
            wait_until(lambda: process.poll() is not None or spec.ready(), START_TIMEOUT, f"{spec.name} ready")
        except StackError as exc:
            raise StackError(f"{exc}\n{self.log_tails()}") from None
        if process.poll() is not None:
            raise StackError(f"{spec.name} exited during start-up\n{self.log_tails()}")

    def is_running(self, name: str) -> bool:
        return name in self.services and self.services[name].process.poll() is None

    def running(self) -> list[Service]:
        return [service for name, service in self.services.items() if self.is_running(name)]

    def kill(self, name: str) -> None:
        """SIGKILL one replica, as a crashed pod or machine: no goodbye to its peers, no last push."""
        process = self.services[name].process
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    def log_tails(self) -> str:
        return "\n".join(service.log_tail() for service in self.services.values())


@contextlib.contextmanager
def replicas(specs: Sequence[ServiceSpec]) -> Iterator[Replicas]:
    """Every spec started and ready; all stopped on exit."""
    group = Replicas({spec.name: spec for spec in specs})
    try:
        group.start()
        yield group
    finally:
        group.stop()


def _status(url: str) -> dict[str, Any]:
    """Alertmanager's /api/v2/status `cluster` part: its own name, status ("settling", "ready") and peers."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        response = httpx.get(f"{url}/api/v2/status", timeout=1.0, trust_env=False)
        if response.status_code == 200:
            return dict(response.json()["cluster"])
    return {}


@dataclass
class AlertmanagerCluster:
    """Alertmanagers clustered by gossip; `replicas` starts and kills them."""

    replicas: Replicas

    @property
    def urls(self) -> list[str]:
        """Every member's API URL (what vmalert notifies), running or not."""
        return [f"http://127.0.0.1:{spec.port}" for spec in self.replicas.specs.values()]

    def wait_settled(self, timeout: float = START_TIMEOUT) -> None:
        """Wait (bounded) until every running member has settled its gossip and sees every other running one."""

        def settled() -> bool:
            states = [_status(service.url) for service in self.replicas.running()]
            names = {state.get("name") for state in states}
            return all(
                state.get("status") == "ready" and names <= {peer["name"] for peer in state.get("peers") or []}
                for state in states
            )

        wait_until(settled, timeout, "the Alertmanager cluster to settle", self.replicas.log_tails)

    def sender(self) -> str:
        """The running member at cluster position 0, the one that notifies at once: Alertmanager orders the
        members by name, and a member at position n waits n peer timeouts before it notifies."""
        by_name = {_status(service.url)["name"]: service.name for service in self.replicas.running()}
        return by_name[min(by_name)]


@contextlib.contextmanager
def alertmanager_cluster(workdir: Path, config: Path, size: int = 2) -> Iterator[AlertmanagerCluster]:
    """`size` Alertmanagers gossiping on 127.0.0.1 (each told every other's cluster port), settled.

    Only GOSSIP_INTERVAL and PEER_TIMEOUT_SECONDS are shortened for speed; the deployments keep the defaults.
    """
    binary = require_binary("prometheus-alertmanager")
    ports = [(free_port(), free_port()) for _ in range(size)]
    specs = []
    for index, (web, gossip) in enumerate(ports):
        peers = [f"--cluster.peer=127.0.0.1:{other}" for _, other in ports if other != gossip]
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / f'amdata-{index}'}",
            f"--web.listen-address=127.0.0.1:{web}",
            f"--web.external-url=http://127.0.0.1:{web}",
            f"--cluster.listen-address=127.0.0.1:{gossip}",
            *peers,
            f"--cluster.gossip-interval={GOSSIP_INTERVAL}",
            f"--cluster.peer-timeout={PEER_TIMEOUT_SECONDS:g}s",
        ]
        ready = http_ready(f"http://127.0.0.1:{web}/-/ready")
        specs.append(ServiceSpec(f"alertmanager-{index}", argv, web, workdir / f"alertmanager-{index}.log", ready))
    with replicas(specs) as group:
        cluster = AlertmanagerCluster(group)
        cluster.wait_settled()
        yield cluster
