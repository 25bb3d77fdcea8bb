"""Exposition of spend by API key and of OpenAI's hard spend limits (live figures, from the snapshot).

`openai_daily_api_key_cost_usd` is today's billed cost per key, keys beyond the cap summed as `api_key_id="other"`
and spend outside keys as `api_key_id="none"` (api_keys.py): a project's series add up to its
`openai_daily_cost_usd`. Closed days are pushed beside the project history (key_history.py).
A project without a hard spend limit exports nothing for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from openai_cost_exporter.core.clock import Clock
from openai_cost_exporter.core.models import NO_API_KEY, ApiKey
from openai_cost_exporter.figures.api_keys import OTHER_KEYS, key_name
from openai_cost_exporter.figures.snapshot import CostSnapshot

API_KEY_COST = "openai_daily_api_key_cost_usd"
KEY_LABELS = ["project_id", "project", "api_key_id", "api_key"]
LIMIT_LABELS = ["scope", "project_id", "project"]


class KeyCollector(Collector):
    """Today's cost per API key, and the hard spend limits, of the current snapshot."""

    def __init__(self, snapshot: Callable[[], CostSnapshot | None], clock: Clock) -> None:
        self._snapshot = snapshot
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        if snap is None:
            return
        # As the project series: an earlier day's snapshot (the API failing since midnight) shows no "today".
        if snap.keys is not None and snap.day == self._clock.now().astimezone(dt.UTC).date():
            family = key_family(API_KEY_COST, "Cost of the current UTC day so far, per API key.")
            add_keys(family, snap.keys, snap.names, snap.key_names, named_only=True)
            yield family
        if snap.spend_limits:
            yield from _limit_families(snap)


def key_family(name: str, documentation: str) -> GaugeMetricFamily:
    """An empty family of per-key samples (`add_keys` fills it)."""
    return GaugeMetricFamily(name, documentation, labels=KEY_LABELS)


def add_keys(
    family: GaugeMetricFamily,
    amounts: Mapping[tuple[str, str], Decimal],
    names: Mapping[str, str],
    keys: Mapping[str, ApiKey],
    timestamp: float | None = None,
    *,
    named_only: bool = False,
) -> None:
    """One sample per (project, key) of `amounts`, labelled with the project's and the key's names. `named_only`
    holds back a key not listed yet (its project's listing is under way): its first series carries its name, never
    an id that becomes a name a cycle later (two series for one key in every legend of the day)."""
    for (pid, key_id), amount in sorted(amounts.items()):
        if named_only and key_id not in keys and key_id not in (NO_API_KEY, OTHER_KEYS):
            continue
        family.add_metric([pid, names.get(pid, pid), key_id, key_name(key_id, keys)], float(amount), timestamp)


def _limit_families(snap: CostSnapshot) -> Iterator[GaugeMetricFamily]:
    limits = GaugeMetricFamily(
        "openai_spend_limit_usd",
        "OpenAI's hard monthly spend limit: at it, OpenAI stops serving the organization or the project.",
        labels=LIMIT_LABELS,
    )
    enforcing = GaugeMetricFamily(
        "openai_spend_limit_enforcing",
        "1 while OpenAI enforces the hard spend limit (requests are refused), else 0.",
        labels=LIMIT_LABELS,
    )
    for scope, limit in sorted(snap.spend_limits.items(), key=lambda item: item[0] or ""):
        labels = ["organization", "", ""] if scope is None else ["project", scope, snap.name(scope)]
        limits.add_metric(labels, float(limit.threshold_usd))
        enforcing.add_metric(labels, 1.0 if limit.status == "enforcing" else 0.0)
    yield limits
    yield enforcing
