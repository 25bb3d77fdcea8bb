"""The estimate families while the usual rate is not known (a young organization)."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.export.estimate_metrics import EstimateCollector
from openai_cost_exporter.figures.estimates import Estimates
from tests.moments import DEFAULT


def test_an_unknown_usual_publishes_no_usual_series_and_no_runaway_figures() -> None:
    """With fewer than 3 days of usage, the rate is published but the usual is not (the rule file then judges no
    runaway), and the built-in rule gets no figures: a young organization is not all runaways."""
    young = Estimates(
        taken_at=DEFAULT, rate={"proj_a": Decimal(60)}, usual={}, models={"proj_a": []}, today={}, tokens={},
        requests={}, usual_known=False,
    )  # fmt: skip
    registry = CollectorRegistry()
    registry.register(EstimateCollector(lambda: young, lambda: None, FrozenClock(DEFAULT)))
    labels = {"project_id": "proj_a", "project": "proj_a"}
    assert registry.get_sample_value("openai_estimated_cost_usd_per_hour", labels) == 60.0
    assert registry.get_sample_value("openai_estimated_usual_cost_usd_per_hour", labels) is None
    assert young.runaway_figures({}) == []
