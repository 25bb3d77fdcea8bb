"""The live alert decision replayed over a simulated organization, moment by moment, in one process.

At each moment the replay does what a cycle of the exporter does up to its messages, with the cycle's own
functions: the usage the fake's API serves is fetched and priced into a `UsageStore` (`fetch_usage`, on an
in-memory SQLite), the estimates built from it (`build_estimates`), the billed totals by day read from the fake's
costs pages (the revision window each moment, older days once they closed, as the ledger keeps them), the
snapshot built with the estimates' shape of the day (`build_snapshot`), the figures taken from both
(`cycle_figures`) and judged (`decide`), its `AlertState` carried in memory. The fake's API is called in-process:
the Admin API client reads it through an httpx `MockTransport` over the fake's socket-free handler, so the pages
are the ones the exporter parses, without a socket. What the replay leaves out of a cycle: the hard spend
limits (never listed, so the `spend_limit` rule has nothing to judge), the push and the outbox (a decision is
counted as sent).

tests/fake/test_replay.py checks that a day of it sends what the real cycle over HTTP sends.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx

from openai_cost_exporter.alerts.alerter import cycle_figures
from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import DAY, CostPage, days_between
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.figures.estimates import build_estimates, fetch_usage
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.figures.snapshot import PAGE_DAYS, build_snapshot
from openai_cost_exporter.rules import AlertPolicy
from openai_cost_exporter.rules.decision import AlertState, decide
from openai_cost_exporter.sources.openai.client import AdminClient, RetryPolicy, build_http_client
from openai_cost_exporter.store.usage_store import UsageStore

KEY = "sk-admin-replay"
BASE_URL = "http://fake-admin-api.invalid/v1"
#: The default moments of a replay: every hour of the scored period, and every 5 minutes around a runaway.
HOURLY = dt.timedelta(hours=1)
#: Round a runaway: every cycle of the default interval (a minute) for its first FINE_SPAN, where its message is
#: due, then every AFTER step until AFTER_SPAN from its start, where its end is said.
FINE = dt.timedelta(seconds=defaults.INTERVAL_SECONDS)
FINE_SPAN = dt.timedelta(minutes=20)
AFTER = dt.timedelta(minutes=5)
AFTER_SPAN = dt.timedelta(hours=3)


@dataclass(frozen=True, slots=True)
class Sent:
    """One message the decision sent, and when."""

    at: dt.datetime
    rule: str
    subject_id: str
    level: str
    day: dt.date  # the message's day (an incident's: the day it opened)
    escalation: bool
    ratio: Decimal | None  # today / baseline of a spike; None for a project with no usual spend ("new spend")


def in_process_client(api: FakeAdminAPI) -> AdminClient:
    """An Admin API client whose requests the fake answers in this process (no socket, no retry wait)."""

    def answer(request: httpx.Request) -> httpx.Response:
        reply = api.handle(request.method, request.url.raw_path.decode(), request.headers.get("Authorization"), b"")
        body = reply.body if isinstance(reply.body, bytes) else "".join(reply.body).encode()
        return httpx.Response(reply.status, content=body, headers={**reply.headers, "Content-Type": reply.content_type})

    http = build_http_client(BASE_URL, KEY, transport=httpx.MockTransport(answer))
    return AdminClient(http, retry=RetryPolicy(attempts=1))


class Replay:
    """The decision of every moment over one organization, its state kept from one moment to the next."""

    def __init__(
        self,
        client: AdminClient,
        clock: FrozenClock,
        policy: AlertPolicy,
        *,
        usage_history_days: int = defaults.USAGE_HISTORY_DAYS,
        revision_days: int = defaults.REVISION_DAYS,
    ) -> None:
        self._client = client
        self._clock = clock
        self._policy = policy
        self._usage_days = usage_history_days
        self._revision_days = revision_days
        self._conn = sqlite3.connect(":memory:")
        self._usage = UsageStore(self._conn)
        self._book = PriceBook()
        self._closed: dict[dt.date, dict[str, Decimal]] = {}  # days read after they closed, as the ledger has them
        self._names: dict[str, str] | None = None
        self.state = AlertState()

    def close(self) -> None:
        self._conn.close()

    def step(self, now: dt.datetime) -> list[Sent]:
        """What a cycle at `now` decides to send."""
        self._clock.current = now
        if self._names is None:  # listed once: the fake lists every project, whenever it starts spending
            self._names = {p.id: p.name for p in self._client.list_projects()}
        fetch_usage(self._client, self._usage, self._book, now, history_days=self._usage_days)
        estimates = build_estimates(self._usage, now, history_days=self._usage_days)
        totals = self._totals(now)
        snapshot = build_snapshot(
            now, self._names, totals, baseline_days=self._policy.baseline_days, day_shares=estimates.shares
        )
        figures = cycle_figures(snapshot, estimates, snapshot.names)
        outcome = decide(figures, self.state, self._policy, now.date(), snapshot.names)
        self.state = outcome.state
        return [
            Sent(now, d.alert.rule, d.alert.subject_id, d.alert.level, d.key.day, d.escalation, d.alert.ratio)
            for d in outcome.decisions
        ]

    def run(self, moments: Iterable[dt.datetime]) -> list[Sent]:
        """Every message of these moments, in order."""
        return [sent for now in moments for sent in self.step(now)]

    def _totals(self, now: dt.datetime) -> dict[dt.date, dict[str, Decimal]]:
        """The billed totals a cycle's snapshot reads at `now`: as service.py fetches them (the revision window,
        and any day of the baseline window or month never read since it closed) and the ledger sums them."""
        today = now.date()
        horizon = min(today - dt.timedelta(days=max(self._policy.baseline_days, PAGE_DAYS - 1)), today.replace(day=1))
        unsettled = [day for day in days_between(horizon, today) if day not in self._closed]
        start = min([today - dt.timedelta(days=self._revision_days), *unsettled])
        fresh = _day_totals(self._client.iter_costs(start, today + DAY), start, today + DAY)
        self._closed.update({day: totals for day, totals in fresh.items() if day < today})
        first = min(today.replace(day=1), today - dt.timedelta(days=max(self._policy.baseline_days, PAGE_DAYS)))
        days = {**self._closed, today: fresh.get(today, {})}
        return {day: totals for day, totals in days.items() if day >= first and totals}


def _day_totals(pages: Iterator[CostPage], start: dt.date, end: dt.date) -> dict[dt.date, dict[str, Decimal]]:
    """Per day of [start, end) and project, the sum of its rows (the ledger's `project_totals`)."""
    totals: dict[dt.date, dict[str, Decimal]] = {day: {} for day in days_between(start, end)}
    for page in pages:
        for row in page.rows:
            day = totals.setdefault(row.day, {})
            day[row.project_id] = day.get(row.project_id, Decimal(0)) + row.amount_usd
    return totals


def moments(
    start: dt.datetime,
    end: dt.datetime,
    fine_from: Iterable[dt.datetime] = (),
    *,
    every: dt.timedelta = HOURLY,
    fine: dt.timedelta = FINE,
    fine_span: dt.timedelta = FINE_SPAN,
) -> list[dt.datetime]:
    """The moments of a replay: every `every` over [start, end), and from each moment of `fine_from` (a runaway's
    start) every `fine` for `fine_span`, then every AFTER until AFTER_SPAN, in order."""
    found = set()
    t = start
    while t < end:
        found.add(t)
        t += every
    for first in fine_from:  # on the cycles' grid (multiples of the step since midnight), as a running exporter
        for step, span in ((fine, fine_span), (AFTER, AFTER_SPAN)):
            t = first + (dt.datetime.min.replace(tzinfo=dt.UTC) - first) % step
            while t <= first + span:
                found.add(t)
                t += step
    return sorted(found)
