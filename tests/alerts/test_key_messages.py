"""API keys where a user looks: the top keys of alert messages, the Slack blocks, /metrics and the spend page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from openai_cost_exporter.alerts.message_inputs import KeyFigures, gather_keys
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.errors import APIUnavailable, ScopeError
from openai_cost_exporter.core.models import ApiKey, CostRow, SpendLimit
from openai_cost_exporter.export.key_metrics import KeyCollector
from openai_cost_exporter.figures.snapshot import build_snapshot
from openai_cost_exporter.notify.messages import MessageContext
from openai_cost_exporter.notify.slack_blocks import build_alert_message
from openai_cost_exporter.notify.text import limit_details
from openai_cost_exporter.rules import ORGANIZATION, Alert, LimitFigures
from openai_cost_exporter.sources.openai.failures import status_error
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state
from openai_cost_exporter.web.page import PageView, render_page
from openai_cost_exporter.web.server import page_keys

D = Decimal
NOW = dt.datetime(2026, 12, 2, 15, tzinfo=dt.UTC)
TODAY = NOW.date()
KEYS = {
    "key_bot": ApiKey("key_bot", "checkout-bot", "checkout", "service_account"),
    "key_ann": ApiKey("key_ann", "ann-laptop", "Ann Lee", "user"),
}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    conn = open_state(tmp_path / "state.sqlite3")
    ledger = Ledger(conn)
    rows = [
        CostRow(TODAY, "proj_a", None, D("5"), "key_bot"),
        CostRow(TODAY, "proj_a", None, D("2"), "key_ann"),
        CostRow(TODAY, "proj_a", None, D("0.5"), "none"),
        CostRow(TODAY.replace(day=1), "proj_a", None, D("40"), "key_ann"),
    ]
    ledger.replace_days([TODAY.replace(day=1), TODAY], rows, NOW, by_key=True)
    yield ledger
    conn.close()


def alert(rule: str, subject: str = "proj_a", level: str = "firing") -> Alert:
    return Alert(rule, subject, "Alpha", "critical", D(10), D(5), D(2), None, level)  # type: ignore[arg-type]


class Figures:
    """KeyFigures' two sources, recording what they were asked."""

    def __init__(self, rates: Mapping[str, Mapping[str, Decimal]] | Exception = {}) -> None:  # noqa: B006
        self.rates_given = rates
        self.named: list[set[str]] = []
        self.rated: list[list[str]] = []

    def names(self, projects: Collection[str]) -> Mapping[str, ApiKey]:
        self.named.append(set(projects))
        return KEYS

    def rates(self, now: dt.datetime, projects: Sequence[str]) -> Mapping[str, Mapping[str, Decimal]]:
        self.rated.append(list(projects))
        if isinstance(self.rates_given, Exception):
            raise self.rates_given
        return self.rates_given

    def figures(self) -> KeyFigures:
        return KeyFigures(names=self.names, rates=self.rates)


def test_a_spike_lists_todays_billed_keys_with_owners(ledger: Ledger) -> None:
    """A spike's top keys are today's billed amounts by key, largest first, named with their owner; spend outside
    keys is its own line."""
    source = Figures()
    lines = gather_keys([alert("spike")], ledger, source.figures(), NOW)
    assert lines == {
        "proj_a": [
            ("checkout-bot", "service account checkout", D("5")),
            ("ann-laptop", "Ann Lee", D("2")),
            ("no API key", "", D("0.5")),
        ]
    }
    assert source.named == [{"proj_a"}] and source.rated == []


def test_a_spend_limit_lists_the_months_keys(ledger: Ledger) -> None:
    """A hard limit message's keys are the month to date by key (who used the limit up), not today's."""
    lines = gather_keys([alert("spend_limit")], ledger, Figures().figures(), NOW)
    assert lines["proj_a"][0] == ("ann-laptop", "Ann Lee", D("42"))


def test_a_runaway_lists_the_estimated_keys_of_the_last_hour(ledger: Ledger) -> None:
    """A runaway's keys come from usage by key (an estimate), asked once for the runaway projects only."""
    source = Figures({"proj_a": {"key_ann": D("30"), "key_bot": D("1")}})
    lines = gather_keys([alert("runaway"), alert("spike", "proj_b")], ledger, source.figures(), NOW)
    assert lines["proj_a"] == [("ann-laptop", "Ann Lee", D("30")), ("checkout-bot", "service account checkout", D("1"))]
    assert source.rated == [["proj_a"]]


def test_usage_by_key_failing_leaves_the_runaway_without_keys(ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    """When usage by key cannot be read, the runaway message goes out without keys, and one warning says why."""
    source = Figures(APIUnavailable("GET /organization/usage/completions failed after 4 attempts: HTTP 503"))
    lines = gather_keys([alert("runaway")], ledger, source.figures(), NOW)
    assert lines == {"proj_a": []}
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "usage by API key" in caplog.text


def test_the_organization_and_resolved_alerts_ask_nothing(ledger: Ledger) -> None:
    """No keys for an organization-wide alert or a runaway that is over: nothing is listed or fetched."""
    source = Figures()
    assert (
        gather_keys([alert("spike", ORGANIZATION), alert("runaway", level="resolved")], ledger, source.figures(), NOW)
        == {}
    )
    assert source.named == [] and source.rated == []


@pytest.mark.parametrize(
    ("rule", "heading"),
    [
        ("spike", "*Top API keys today*"),
        ("runaway", "*Top API keys, last 60 minutes (estimate)*"),
        ("spend_limit", "*Top API keys this month*"),
    ],
)
def test_slack_message_shows_the_keys_under_the_rules_heading(rule: str, heading: str) -> None:
    """The keys section is headed by what its amounts are (today, the last hour, the month), names and owners
    escaped for mrkdwn."""
    level = "firing"
    ctx = MessageContext(keys=[("<bot> & co", "service account ops", D("5.5"))], data_time=NOW)
    message = build_alert_message(alert(rule, level=level), ctx)
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b]
    keys = next(text for text in sections if text.startswith(heading))
    assert keys.endswith("\n• &lt;bot&gt; &amp; co (service account ops): $5.50")


def test_metrics_show_capped_keys_and_limits_with_their_scope() -> None:
    """/metrics has today's key series (named; by id when its project's listing did not have it, deleted since)
    and each hard limit with its scope; a key not listed yet is held back; a day older than today shows no key
    series."""
    snap = build_snapshot(
        NOW,
        {"proj_a": "Alpha"},
        {TODAY: {"proj_a": D("7.5")}},
        baseline_days=7,
        keys={
            ("proj_a", "key_bot"): D("5"),
            ("proj_a", "key_gone"): D("2"),
            ("proj_a", "key_new"): D("1"),
            ("proj_a", "none"): D("0.5"),
        },
        key_names={**KEYS, "key_gone": ApiKey("key_gone", "key_gone", "", "")},  # the store keeps an unlisted key so
        spend_limits={None: SpendLimit(D("5000"), "inactive"), "proj_a": SpendLimit(D("100.25"), "enforcing")},
    )
    registry = CollectorRegistry()
    registry.register(KeyCollector(lambda: snap, FrozenClock(NOW)))
    text = generate_latest(registry).decode()
    named = 'api_key="checkout-bot",api_key_id="key_bot",project="Alpha",project_id="proj_a"} 5.0'
    assert "openai_daily_api_key_cost_usd{" + named in text
    assert 'api_key="key_gone",api_key_id="key_gone"' in text and 'api_key="no API key",api_key_id="none"' in text
    assert "key_new" not in text  # its name comes with its project's listing: its first series carries it
    assert 'openai_spend_limit_usd{project="",project_id="",scope="organization"} 5000.0' in text
    assert 'openai_spend_limit_usd{project="Alpha",project_id="proj_a",scope="project"} 100.25' in text
    assert 'openai_spend_limit_enforcing{project="Alpha",project_id="proj_a",scope="project"} 1.0' in text
    tomorrow = KeyCollector(lambda: snap, FrozenClock(NOW + dt.timedelta(days=1)))
    later = CollectorRegistry()
    later.register(tomorrow)
    assert "openai_daily_api_key_cost_usd{" not in generate_latest(later).decode()


def test_the_page_lists_the_top_keys_of_alerting_projects_only() -> None:
    """The spend page shows the top keys under a project with an alert state, escaped, and none for the others."""
    snap = build_snapshot(
        NOW,
        {"proj_a": "Alpha", "proj_b": "Beta"},
        {TODAY: {"proj_a": D("7"), "proj_b": D("1")}},
        baseline_days=7,
        keys={("proj_a", "key_bot"): D("5"), ("proj_a", "key_ann"): D("2"), ("proj_b", "key_x"): D("1")},
        key_names={**KEYS, "key_x": ApiKey("key_x", "<x>", "", "")},
    )
    keys = page_keys(snap, {"proj_a": "spike (4.0×)"})
    assert keys == {"proj_a": [("checkout-bot", "service account checkout", D("5")), ("ann-laptop", "Ann Lee", D("2"))]}
    view = PageView(
        NOW,
        NOW,
        [TODAY],
        {TODAY: dict(snap.today)},
        dict(snap.names),
        dict(snap.today),
        {},
        {"proj_a": "spike"},
        keys=keys,
    )
    html = render_page(view).decode()
    assert "top keys today: checkout-bot (service account checkout) $5.00, ann-laptop (Ann Lee) $2.00" in html
    assert "&lt;x&gt;" not in html and "<x>" not in html


def test_an_organization_limit_message_names_the_scope_and_the_limit() -> None:
    """The organization's hard limit message says it is the whole organization, its month to date and the limit."""
    limit = Alert("spend_limit", ORGANIZATION, "Organization", "critical", D(900), D(1000), D(40), D("0.9"), "firing")
    message = build_alert_message(limit, MessageContext(details=[("Limit reached", "in about 2.5 days")]))
    fields = [f["text"] for b in message["blocks"] if b["type"] == "section" for f in b.get("fields", [])]
    assert fields[:3] == [
        "*Scope*\nWhole organization",
        "*Month to date*\n$900.00",
        "*Hard limit (OpenAI's)*\n$1,000.00 a month",
    ]
    assert "*Limit reached*\nin about 2.5 days" in fields
    assert message["text"].endswith("organization: month to date $900.00, OpenAI's hard limit $1,000.00 a month")


def test_a_forecast_crossing_the_limit_late_in_the_month_says_by_the_months_end() -> None:
    """When the forecast (which counts all of today) crosses the limit but the pace from now reaches it only after
    the month ends, the message says "by the end of the month", not "not this month"."""
    figures = LimitFigures("proj_a", "Alpha", D(1900), D(3100), D(100), D(3085))
    said = dict(limit_details(figures, dt.datetime(2026, 12, 20, 18, tzinfo=dt.UTC)))
    assert said["Limit reached"] == "by the end of the month at $100.00 a day (forecast $3,100.00)"


def test_a_forbidden_listing_says_what_the_key_needs() -> None:
    """A 403 on a project's key listing names the listings' access, not the usage scope."""
    request = httpx.Request("GET", "https://api.example/v1/organization/projects/proj_a/api_keys")
    reply = httpx.Response(403, json={"error": {"message": "Missing scopes"}}, request=request)
    error = status_error("/organization/projects/proj_a/api_keys", reply, "sk-admin-secret")
    assert isinstance(error, ScopeError)
    assert "read access to the projects' API keys and limits" in str(error) and "api.usage.read" not in str(error)
