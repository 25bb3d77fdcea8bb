"""The exporter's own health metrics, prefixed `openai_cost_exporter_`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from openai_cost_exporter import __version__

PREFIX = "openai_cost_exporter"
#: The stages of a cycle that count their failures in `openai_cost_exporter_errors_total{stage}`.
STAGES = (
    "costs", "projects", "usage", "directory", "snapshot", "push", "alerts", "notify",
    "api_keys", "spend_limit",  # the background listings (directory.py)
    "cycle",
)  # fmt: skip
#: The results of a cycle in `openai_cost_exporter_cycles_total{result}`.
CYCLE_RESULTS = ("success", "failure")


def _counter(registry: CollectorRegistry, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    return Counter(f"{PREFIX}_{name}", documentation, labels, registry=registry)


def _gauge(registry: CollectorRegistry, name: str, documentation: str) -> Gauge:
    return Gauge(f"{PREFIX}_{name}", documentation, registry=registry)


class SelfMetrics:
    """Counters and gauges about cycles, API requests, pushes and notifications."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.api_requests = _counter(
            registry,
            "api_requests",
            "Requests sent to the OpenAI Admin API, by endpoint and HTTP status (or error kind).",
            ("endpoint", "status"),
        )
        self.errors = _counter(
            registry,
            "errors",
            f"Failures by stage ({', '.join(STAGES)}); the loop carries on.",
            ("stage",),
        )
        self.cycles = _counter(registry, "cycles", "Collection cycles, by result (success, failure).", ("result",))
        self.last_success = _gauge(
            registry, "last_success_timestamp_seconds", "Unix time of the end of the last fully successful cycle."
        )
        self.cycle_duration = _gauge(registry, "cycle_duration_seconds", "Wall time of the last cycle.")
        self.projects = _gauge(registry, "projects", "Projects known by name (archived ones included).")
        self._notification_metrics(registry)
        self.unpriced_models = _gauge(
            registry,
            "unpriced_models",
            "Models seen in usage that genai-prices has no price for; their tokens are left out of estimates.",
        )
        self.pushed_samples = _counter(registry, "pushed_samples", "Samples accepted by the push target.")
        self.rejected_rows = _counter(
            registry,
            "rejected_cost_rows",
            "Cost rows left out for an absurd or unreadable amount (each named in one log line).",
        )
        Info(f"{PREFIX}_build", "Version of the exporter.", registry=registry).info({"version": __version__})
        self._start_known_series()

    def _notification_metrics(self, registry: CollectorRegistry) -> None:
        self.notifications_sent = _counter(
            registry, "notifications_sent", "Slack messages delivered, by rule.", ("rule",)
        )
        self.notifications_pending = _gauge(
            registry, "notifications_pending", "Slack messages decided but not yet delivered."
        )
        # At least once (issue 21): an answer lost is a message sent again, so a possible duplicate in the channel.
        self.notifications_in_doubt = _counter(
            registry,
            "notifications_in_doubt",
            "Slack posts whose answer was lost (no answer, or a crash before it was recorded): each may have been "
            "shown, and its message is sent again, so each is a possible duplicate.",
        )
        self.notifications_given_up = _counter(
            registry,
            "notifications_given_up",
            "Slack messages given up because Slack refused them for good (a 4xx other than 408/429).",
        )

    def _start_known_series(self) -> None:
        # Known label values start at 0, so rate()/increase() see the first failure (no missing series).
        for stage in STAGES:
            self.errors.labels(stage=stage)
        for result in CYCLE_RESULTS:
            self.cycles.labels(result=result)

    def count_error(self, stage: str) -> None:
        self.errors.labels(stage=stage).inc()

    def count_request(self, endpoint: str, status: str) -> None:
        self.api_requests.labels(endpoint=endpoint, status=status).inc()


#: Endpoints listed per project in the background (directory.py): counted apart from the cycle's requests.
LISTING_ENDPOINTS = frozenset({"api_keys", "spend_limit"})


class RequestCounter:
    """The API client's request hook: counts requests (for the cycle's log line) and forwards each one."""

    def __init__(self, forward: Callable[[str, str], None] | None = None) -> None:
        self.total = 0  # the cycle's own requests
        self.listings = 0  # per-project listings, made in the background
        self._forward = forward
        self._lock = threading.Lock()  # names, costs and listings are fetched from several threads

    def __call__(self, endpoint: str, status: str) -> None:
        with self._lock:
            if endpoint in LISTING_ENDPOINTS:
                self.listings += 1
            else:
                self.total += 1
        if self._forward is not None:
            self._forward(endpoint, status)


class Labelled(Collector):
    """Another registry's metrics with labels added to every sample: the self-metrics of one replica of two, whose
    cost figures are the same series as its peer's but whose counters are its own."""

    def __init__(self, registry: CollectorRegistry, labels: Mapping[str, str]) -> None:
        self._registry = registry
        self._labels = dict(labels)

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labels = {**sample.labels, **self._labels}
                labelled.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
            yield labelled


def self_metrics(registry: CollectorRegistry, replica: str) -> SelfMetrics:
    """The exporter's own metrics, in `registry`; with a `replica` name, labelled with it (the figures are not: two
    replicas push the same figures as one series each, while their counters stay their own)."""
    if not replica:
        return SelfMetrics(registry)
    own = CollectorRegistry(auto_describe=True)
    metrics = SelfMetrics(own)
    registry.register(Labelled(own, {"replica": replica}))
    return metrics
