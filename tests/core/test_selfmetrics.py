"""The exporter's own metrics, and the `replica` label two replicas keep them apart with."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from openai_cost_exporter.core.selfmetrics import self_metrics


def test_a_replica_labels_its_own_metrics_and_nothing_else() -> None:
    """With a replica name, every self-metric sample carries `replica`, counters included; a figure registered beside
    them does not (two replicas push the same figures as one series, their counters as two)."""
    registry = CollectorRegistry(auto_describe=True)
    metrics = self_metrics(registry, "exporter-a")
    metrics.count_error("costs")
    figure = Gauge("openai_daily_cost_usd", "a figure", ["project_id"], registry=registry)
    figure.labels("proj_a").set(4)
    assert (
        registry.get_sample_value("openai_cost_exporter_errors_total", {"stage": "costs", "replica": "exporter-a"}) == 1
    )
    assert registry.get_sample_value("openai_cost_exporter_errors_total", {"stage": "costs"}) is None
    assert registry.get_sample_value("openai_daily_cost_usd", {"project_id": "proj_a"}) == 4
    plain = CollectorRegistry(auto_describe=True)
    self_metrics(plain, "").count_error("costs")
    assert plain.get_sample_value("openai_cost_exporter_errors_total", {"stage": "costs"}) == 1
