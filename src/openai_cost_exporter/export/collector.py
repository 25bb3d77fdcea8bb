"""Metric exposition: Prometheus collectors built fresh from an immutable snapshot at every scrape or push.

`CostCollector` serves the live figures (no timestamps: the scrape or push time is the sample time).
`HistoryCollector` writes closed UTC days with an explicit timestamp, the day's last second, so a graph shows one
final point per day beside the live intraday points (used by backfill and by re-pushes of revised days).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from openai_cost_exporter.core.clock import Clock, SystemClock
from openai_cost_exporter.core.models import ZERO, day_start
from openai_cost_exporter.export.push import sample_stamp, sample_value, series_prefix
from openai_cost_exporter.figures.snapshot import CostSnapshot
from openai_cost_exporter.rules import AlertPolicy, project_limits

PROJECT_LABELS = ["project_id", "project"]
DAILY_COST = "openai_daily_cost_usd"
#: Revisions of one day that each get their own millisecond (a thousand: the last second of the day).
MAX_REVISION = 999
LINE_ITEM_COST = "openai_daily_line_item_cost_usd"


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class CostCollector(Collector):
    """The live cost gauges of the current snapshot; nothing until the first cycle has succeeded.

    A snapshot of an earlier UTC day (the API failing since midnight) is not shown: yesterday's full total
    would pass for today's, and rules would fire on it. The exporter's own metrics say the data is stale.
    """

    def __init__(
        self, snapshot: Callable[[], CostSnapshot | None], policy: AlertPolicy, clock: Clock | None = None
    ) -> None:
        self._snapshot = snapshot
        self._policy = policy
        self._clock = clock or SystemClock()

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        if snap is None:
            return
        if snap.day != self._clock.now().astimezone(dt.UTC).date():
            yield self._budgets(snap)
            return
        ids, usual_ids = snap.project_ids, snap.project_ids if snap.baseline_known else []  # unknown: no spike
        yield _project_family(DAILY_COST, "Cost of the current UTC day so far.", snap, snap.today, ids)
        yield _project_family(
            "openai_daily_cost_baseline_usd",
            "What the project usually spends by this time of the UTC day: the median of its kind of day (weekday or"
            " weekend) in the baseline window, times its usual share of the day by now; absent until history is known.",
            snap,
            snap.baseline,
            usual_ids,
        )
        yield _project_family(
            "openai_daily_cost_spread_usd",
            "How much the project's day usually varies by this time (a robust standard deviation of its kind of day).",
            snap,
            snap.spread,
            usual_ids,
        )
        yield _project_family(
            "openai_month_to_date_cost_usd",
            "Cost of the current UTC month so far.",
            snap,
            snap.month_to_date,
            ids,
        )
        yield _project_family(
            "openai_month_forecast_cost_usd",
            "Month to date plus the mean of the last 7 closed days for each day left in the UTC month.",
            snap,
            snap.forecast,
            ids,
        )
        if snap.line_items is not None:
            yield _line_item_family(LINE_ITEM_COST, snap.names, snap.line_items, timestamp=None)
        yield self._budgets(snap)

    def _budgets(self, snap: CostSnapshot) -> GaugeMetricFamily:
        family = _gauge(
            "openai_cost_budget_usd",
            "Configured budgets; without project labels for the whole organization.",
            ["period", *PROJECT_LABELS],
        )
        for period, amount in (
            ("daily", self._policy.daily_budget_usd),
            ("monthly", self._policy.monthly_budget_usd),
        ):
            if amount is not None:
                # No project labels at all, rather than empty ones: the exposition says what the HELP text says.
                family.samples.append(Sample(family.name, {"period": period}, float(amount)))
        for project_id in sorted(set(snap.names) | set(snap.project_ids)):
            # The same lookup as the built-in engine: a muted or excluded project has no budget to alert on.
            limits = project_limits(self._policy, project_id, snap.name(project_id))
            if limits is None:
                continue
            for period, amount in (
                ("daily", limits.daily_budget_usd),
                ("monthly", limits.monthly_budget_usd),
            ):
                if amount is not None:
                    family.add_metric([period, project_id, snap.name(project_id)], float(amount))
        return family


def _project_family(
    name: str, documentation: str, snap: CostSnapshot, figures: Mapping[str, Decimal], ids: Iterable[str]
) -> GaugeMetricFamily:
    family = _gauge(name, documentation, PROJECT_LABELS)
    for project_id in ids:
        # float() only here, at the last step: the API's Decimal sum becomes the sample value.
        family.add_metric([project_id, snap.name(project_id)], float(figures.get(project_id, ZERO)))
    return family


def _line_item_family(
    name: str,
    names: Mapping[str, str],
    figures: Mapping[tuple[str, str], Decimal],
    timestamp: float | None,
) -> GaugeMetricFamily:
    family = _gauge(name, "Cost of one line item of a project over a UTC day.", [*PROJECT_LABELS, "line_item"])
    for (project_id, line_item), amount in sorted(figures.items()):
        family.add_metric([project_id, names.get(project_id, project_id), line_item], float(amount), timestamp)
    return family


def day_sample_time(day: dt.date, revision: int = 0) -> float:
    """Where a closed day's final value is written: the day's last second, plus a millisecond per revision.

    Each re-push of a revised day lands strictly later than the one before, inside the same day, so the newest
    value wins in every VictoriaMetrics dedup mode and in instant queries: with `-dedup.minScrapeInterval`,
    VictoriaMetrics 1.79 kept the *old* sample of a same-timestamp overwrite for part of the series (issue 11).
    """
    return float(day_start(day + dt.timedelta(days=1)) - 1) + min(revision, MAX_REVISION) / 1000


class HistoryCollector(Collector):
    """Final totals of closed UTC days, each sample timestamped inside its day.

    Every project with spend on any of the days (or named in `also_projects`) gets a sample on each of them (0 on
    days without spend), so a graph has no holes and a revision that removes the spend of such a project
    overwrites the old value. A line item that a revision removes entirely is not zeroed.

    `collect()` serves a registry; `text()` writes the same samples, byte for byte as `generate_latest` would,
    without building a prometheus-client sample per line (the push of a long backfill is a million of them).
    """

    _DAILY_HELP = "Final cost of a closed UTC day."
    _LINE_ITEM_HELP = "Final cost of one line item over a closed UTC day."

    def __init__(
        self,
        totals: Mapping[dt.date, Mapping[str, Decimal]],
        names: Mapping[str, str],
        line_items: Mapping[dt.date, Mapping[tuple[str, str], Decimal]] | None = None,
        also_projects: Iterable[str] = (),
        stamps: Mapping[dt.date, float] | None = None,
    ) -> None:
        self._stamps = stamps or {}
        self._totals = totals
        self._names = names
        self._line_items = line_items or {}
        self._projects = sorted({pid for day in totals.values() for pid in day} | set(also_projects))

    def collect(self) -> Iterator[Metric]:
        family = _gauge(DAILY_COST, self._DAILY_HELP, PROJECT_LABELS)
        for day in sorted(self._totals):
            stamp = self._stamp(day)
            for project_id in self._projects:
                amount = self._totals[day].get(project_id, ZERO)
                family.add_metric([project_id, self._names.get(project_id, project_id)], float(amount), stamp)
        yield family
        if self._line_items:
            yield from self._collect_line_items()

    def _collect_line_items(self) -> Iterator[Metric]:
        family = _gauge(LINE_ITEM_COST, self._LINE_ITEM_HELP, [*PROJECT_LABELS, "line_item"])
        for day in sorted(self._line_items):
            stamp = self._stamp(day)
            for (project_id, line_item), amount in sorted(self._line_items[day].items()):
                family.add_metric(
                    [project_id, self._names.get(project_id, project_id), line_item], float(amount), stamp
                )
        yield family

    def text(self, prefixes: dict[tuple[str, ...], bytes] | None = None) -> bytes:
        """The samples of `collect()` in the Prometheus text format, as `generate_latest` writes them.

        `prefixes` keeps each series' line start (name and labels, encoded) from one call to the next, for
        collectors of the same `names`: a push of many days writes the same series again and again. Lines are
        joined as bytes: one emoji in a name would make a joined `str` four bytes a character.
        """
        known = {} if prefixes is None else prefixes
        out = [self._header(DAILY_COST, self._DAILY_HELP)]
        starts = [self._prefix(known, (project_id,)) for project_id in self._projects]
        for day in sorted(self._totals):
            amounts, stamp = self._totals[day], sample_stamp(self._stamp(day)).encode()
            out.extend(
                start + sample_value(float(amounts.get(project_id, ZERO))).encode() + stamp
                for start, project_id in zip(starts, self._projects, strict=True)
            )
        if self._line_items:
            out.append(self._header(LINE_ITEM_COST, self._LINE_ITEM_HELP))
            for day in sorted(self._line_items):
                stamp = sample_stamp(self._stamp(day)).encode()
                out.extend(
                    self._prefix(known, key) + sample_value(float(amount)).encode() + stamp
                    for key, amount in sorted(self._line_items[day].items())
                )
        return b"".join(out)

    @staticmethod
    def _header(name: str, documentation: str) -> bytes:
        return f"# HELP {name} {documentation}\n# TYPE {name} gauge\n".encode()  # as generate_latest heads a gauge

    def _prefix(self, known: dict[tuple[str, ...], bytes], key: tuple[str, ...]) -> bytes:
        """The line start of a project's series, `(project_id,)`, or of its line item's, `(project_id, line_item)`."""
        start = known.get(key)
        if start is None:
            labels = {"project_id": key[0], "project": self._names.get(key[0], key[0])}
            if len(key) == 1:
                start = series_prefix(DAILY_COST, labels).encode()
            else:
                start = series_prefix(LINE_ITEM_COST, {**labels, "line_item": key[1]}).encode()
            known[key] = start
        return start

    def _stamp(self, day: dt.date) -> float:
        return self._stamps.get(day, day_sample_time(day))

    @property
    def sample_count(self) -> int:
        return len(self._totals) * len(self._projects) + sum(len(day) for day in self._line_items.values())
