"""Exposition of the estimates: their own metric names, never mixed into the billed series.

Every family here says "estimated" in its name and its help; the billed `openai_daily_cost_usd` stays the costs
endpoint's exact sum.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from openai_cost_exporter.core.clock import Clock
from openai_cost_exporter.core.money import to_float
from openai_cost_exporter.figures.estimates import Estimates
from openai_cost_exporter.figures.snapshot import CostSnapshot

PROJECT = ["project_id", "project"]
#: Oldest estimates still exposed (three cycles at the default interval).
MAX_AGE = dt.timedelta(minutes=15)


class EstimateCollector(Collector):
    """Estimated spend per hour, today's estimate per model, and today's tokens and requests."""

    def __init__(
        self,
        estimates: Callable[[], Estimates | None],
        snapshot: Callable[[], CostSnapshot | None],
        clock: Clock,
    ) -> None:
        self._estimates = estimates
        self._snapshot = snapshot
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        est, now = self._estimates(), self._clock.now()
        # Estimates older than MAX_AGE (usage unreadable for a while) are withheld: a stale rate would keep a
        # rule-file runaway firing, and yesterday's "today" would pass for the new day's.
        if est is None or now - est.taken_at > MAX_AGE or est.taken_at.date() != now.date():
            return
        snap = self._snapshot()

        def name(pid: str) -> str:
            return snap.name(pid) if snap is not None else pid

        rate = GaugeMetricFamily(
            "openai_estimated_cost_usd_per_hour",
            "ESTIMATE from token usage priced with genai-prices: the spend rate of the recent minutes, per hour.",
            labels=PROJECT,
        )
        usual = GaugeMetricFamily(
            "openai_estimated_usual_cost_usd_per_hour",
            "ESTIMATE: median rate of the same minutes of the clock over the usage history window, per hour.",
            labels=PROJECT,
        )
        for pid in sorted(est.rate):
            rate.add_metric([pid, name(pid)], to_float(est.rate[pid]))
            if pid in est.usual:  # not known (too little history): no series, so the rule file judges nothing
                usual.add_metric([pid, name(pid)], to_float(est.usual[pid]))
        yield rate
        yield usual
        yield from self._today(est, name)

    @staticmethod
    def _today(est: Estimates, name: Callable[[str], str]) -> Iterator[Metric]:
        today = GaugeMetricFamily(
            "openai_estimated_daily_cost_usd",
            "ESTIMATE from token usage: the current UTC day so far, per model (not billed).",
            labels=[*PROJECT, "model"],
        )
        for (pid, model), amount in sorted(est.today.items()):
            today.add_metric([pid, name(pid), model], to_float(amount))
        yield today
        tokens = GaugeMetricFamily(
            "openai_usage_tokens",
            "Tokens used in the current UTC day so far (usage endpoints), by direction.",
            labels=[*PROJECT, "model", "direction"],
        )
        for (pid, model, direction), count in sorted(est.tokens.items()):
            tokens.add_metric([pid, name(pid), model, direction], count)
        yield tokens
        requests = GaugeMetricFamily(
            "openai_usage_requests",
            "Model requests in the current UTC day so far (usage endpoints).",
            labels=[*PROJECT, "model"],
        )
        for (pid, model), count in sorted(est.requests.items()):
            requests.add_metric([pid, name(pid), model], count)
        yield requests
