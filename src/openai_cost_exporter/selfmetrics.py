"""The exporter's own health metrics, prefixed `openai_cost_exporter_`."""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from openai_cost_exporter import __version__

PREFIX = "openai_cost_exporter"
#: The stages of a cycle that count their failures in `openai_cost_exporter_errors_total{stage}`.
STAGES = ("costs", "projects", "usage", "snapshot", "push", "alerts", "notify", "cycle")


class SelfMetrics:
    """Counters and gauges about cycles, API requests, pushes and notifications."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.api_requests = Counter(
            f"{PREFIX}_api_requests",
            "Requests sent to the OpenAI Admin API, by endpoint and HTTP status (or error kind).",
            ["endpoint", "status"],
            registry=registry,
        )
        self.errors = Counter(
            f"{PREFIX}_errors",
            "Failures by stage (costs, projects, snapshot, push, alerts, notify, cycle); the loop carries on.",
            ["stage"],
            registry=registry,
        )
        self.cycles = Counter(
            f"{PREFIX}_cycles",
            "Collection cycles, by result (success, failure).",
            ["result"],
            registry=registry,
        )
        self.last_success = Gauge(
            f"{PREFIX}_last_success_timestamp_seconds",
            "Unix time of the end of the last fully successful cycle.",
            registry=registry,
        )
        self.cycle_duration = Gauge(
            f"{PREFIX}_cycle_duration_seconds",
            "Wall time of the last cycle.",
            registry=registry,
        )
        self.projects = Gauge(
            f"{PREFIX}_projects",
            "Projects known by name (archived ones included).",
            registry=registry,
        )
        self.notifications_sent = Counter(
            f"{PREFIX}_notifications_sent",
            "Slack messages delivered, by rule.",
            ["rule"],
            registry=registry,
        )
        self.notifications_pending = Gauge(
            f"{PREFIX}_notifications_pending",
            "Slack messages decided but not yet delivered.",
            registry=registry,
        )
        self.unpriced_models = Gauge(
            f"{PREFIX}_unpriced_models",
            "Models seen in usage that genai-prices has no price for; their tokens are left out of estimates.",
            registry=registry,
        )
        self.pushed_samples = Counter(
            f"{PREFIX}_pushed_samples",
            "Samples accepted by the push target.",
            registry=registry,
        )
        Info(f"{PREFIX}_build", "Version of the exporter.", registry=registry).info({"version": __version__})

        # Known label values start at 0, so rate()/increase() see the first failure (no missing series).
        for stage in STAGES:
            self.errors.labels(stage=stage)
        for result in ("success", "failure"):
            self.cycles.labels(result=result)

    def count_error(self, stage: str) -> None:
        self.errors.labels(stage=stage).inc()

    def count_request(self, endpoint: str, status: str) -> None:
        self.api_requests.labels(endpoint=endpoint, status=status).inc()


class RequestCounter:
    """The API client's request hook: counts requests (for the cycle's log line) and forwards each one."""

    def __init__(self, forward: Callable[[str, str], None] | None = None) -> None:
        self.total = 0
        self._forward = forward
        self._lock = threading.Lock()  # names and costs are fetched from two threads

    def __call__(self, endpoint: str, status: str) -> None:
        with self._lock:
            self.total += 1
        if self._forward is not None:
            self._forward(endpoint, status)
