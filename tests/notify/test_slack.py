"""Tests of the Slack message builders and notifiers (against the fake webhook over loopback)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr
from slack_sdk.webhook import WebhookClient, WebhookResponse

from openai_cost_exporter.core.errors import ConfigError, NotifyError
from openai_cost_exporter.notify.log_notifier import LogNotifier
from openai_cost_exporter.notify.messages import MessageContext, OutboxMessage
from openai_cost_exporter.notify.slack import SlackNotifier
from openai_cost_exporter.notify.slack_blocks import (
    PROJECT_USAGE_URL,
    build_alert_message,
    build_digest_message,
    escape,
    fit,
    money,
    shorten,
    usage_url,
)
from openai_cost_exporter.rules import ORGANIZATION, Alert, DigestRow, build_digest
from tests.fake_slack import WEBHOOK_PATH, FakeSlack

D = Decimal
DATA_TIME = dt.datetime(2026, 11, 28, 12, 5, tzinfo=dt.UTC)
SECRET = WEBHOOK_PATH.rsplit("/", 1)[-1]


def alert(**overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "rule": "spike",
        "subject_id": "proj_abc",
        "subject_name": "Research Bot",
        "severity": "warning",
        "value": D("4.00"),
        "threshold": D("1.5"),
        "baseline": D("1.00"),
        "ratio": D(4),
        "level": "firing",
    }
    return Alert(**{**values, **overrides})


def outbox(payload: dict[str, Any] | None = None) -> OutboxMessage:
    return OutboxMessage(
        id=1,
        rule="spike",
        subject_id="proj_abc",
        day=dt.date(2026, 11, 28),
        level="firing",
        escalation=False,
        record=payload or {"text": "hello\nworld"},
        created_at=DATA_TIME,
    )


def all_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


def fields(payload: dict[str, Any]) -> list[str]:
    return [f["text"] for f in payload["blocks"][1]["fields"]]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1234.56", "$1,234.56"),
        ("0", "$0.00"),
        ("0.005", "$0.01"),
        ("-0.5", "-$0.50"),
        ("1234567.891", "$1,234,567.89"),
    ],
)
def test_money(value: str, shown: str) -> None:
    """Money is shown in dollars with thousands separators and cents."""
    assert money(D(value)) == shown


def test_escape() -> None:
    """The three mrkdwn control characters are escaped, ampersand first."""
    assert escape("R&D <bot> &lt;") == "R&amp;D &lt;bot&gt; &amp;lt;"


@pytest.mark.parametrize(
    ("subject", "url"),
    [
        ("proj_abc", "https://platform.openai.com/settings/organization/usage?project_id=proj_abc"),
        (ORGANIZATION, "https://platform.openai.com/settings/organization/usage"),
        ("unattributed", "https://platform.openai.com/settings/organization/usage"),
    ],
)
def test_usage_url(subject: str, url: str) -> None:
    """Projects link to their usage page; the organization and unattributed spend to the organization's."""
    assert usage_url(subject) == url
    assert url.startswith(PROJECT_USAGE_URL.split("?")[0])


def test_spike_message() -> None:
    """A spike message has a header, the project, today, baseline, ratio, line items, data time and link."""
    ctx = MessageContext(line_items=[("gpt-4o", D("3.1")), ("o3", D("0.9"))], data_time=DATA_TIME)
    payload = build_alert_message(alert(), ctx)
    assert payload["blocks"][0]["text"]["text"] == "Spend spike: Research Bot"
    assert fields(payload) == [
        "*Project*\nResearch Bot\n`proj_abc`",
        "*Today so far*\n$4.00",
        "*Baseline*\n$1.00 (usual by now, 7 days of its kind)",
        "*Ratio*\n4.0×",
    ]
    assert payload["blocks"][2]["text"]["text"] == "*Top line items today*\n• gpt-4o: $3.10\n• o3: $0.90"
    footer = payload["blocks"][3]["elements"][0]["text"]
    assert footer.startswith("Data as of 2026-11-28 12:05 UTC")
    assert "usage?project_id=proj_abc|" in footer
    assert payload["text"] == (
        ":warning: Spend spike: Research Bot (proj_abc): today so far $4.00, 4.0× the usual by now $1.00"
    )


def test_message_escapes_names() -> None:
    """Names with &, < and > are escaped in mrkdwn text but left as they are in the plain-text header."""
    payload = build_alert_message(
        alert(subject_name="R&D <lab>"), MessageContext(line_items=[("<b>&", D(1))], baseline_days=3)
    )
    assert payload["blocks"][0]["text"]["text"] == "Spend spike: R&D <lab>"
    assert fields(payload)[0] == "*Project*\nR&amp;D &lt;lab&gt;\n`proj_abc`"
    assert "• &lt;b&gt;&amp;: $1.00" in payload["blocks"][2]["text"]["text"]
    assert "R&amp;D &lt;lab&gt;" in payload["text"] and "<lab>" not in payload["text"]
    assert "3 days of its kind" in str(payload["blocks"])


def test_new_spend_message() -> None:
    """A spike over a zero baseline says "new spend" instead of a ratio, and without data time says so."""
    payload = build_alert_message(alert(ratio=None, baseline=D(0)), MessageContext())
    assert fields(payload)[3] == "*Ratio*\nnew spend"
    assert "new spend" in payload["text"]
    assert "Data time unknown" in all_text(payload)
    assert len(payload["blocks"]) == 3  # no line items section


@pytest.mark.parametrize(
    ("rule", "level", "severity", "title", "label", "budget"),
    [
        ("daily_budget", "firing", "critical", "Daily budget exceeded", "Today so far", "Daily budget"),
        ("monthly_budget", "forecast", "warning", "Monthly budget forecast to be exceeded", "Month-end forecast",
         "Monthly budget"),
        ("monthly_budget", "exceeded", "critical", "Monthly budget exceeded", "Month to date", "Monthly budget"),
    ],
)  # fmt: skip
def test_budget_messages(rule: str, level: str, severity: str, title: str, label: str, budget: str) -> None:
    """Budget messages name the figure compared and the budget instead of a ratio."""
    breach = alert(rule=rule, level=level, severity=severity, value=D("1234.5"), threshold=D(1000), ratio=None)
    payload = build_alert_message(breach, MessageContext())
    assert payload["blocks"][0]["text"]["text"] == f"{title}: Research Bot"
    assert fields(payload)[1:] == [
        f"*{label}*\n$1,234.50",
        "*Baseline*\n$1.00 (usual by now, 7 days of its kind)",
        f"*{budget}*\n$1,000.00",
    ]
    icon = ":rotating_light:" if severity == "critical" else ":warning:"
    assert payload["text"].startswith(f"{icon} {title}: ")
    assert payload["text"].endswith("budget $1,000.00")


def test_organization_message() -> None:
    """An organization alert shows its scope and links to the organization's usage page."""
    payload = build_alert_message(alert(subject_id=ORGANIZATION, subject_name="Organization"), MessageContext())
    assert fields(payload)[0] == "*Scope*\nWhole organization"
    assert "<https://platform.openai.com/settings/organization/usage|" in all_text(payload)
    assert ": organization: today so far" in payload["text"]


def test_escalation_message() -> None:
    """An escalation says so in the header; a spike's gives its ratio now and the value said first (one incident
    across days), a budget's compares with the value notified earlier today."""
    ctx = MessageContext(escalation=True, previous_value=D(2))
    payload = build_alert_message(alert(value=D(5), ratio=D(5)), ctx)
    assert payload["blocks"][0]["text"]["text"] == "Escalation: Spend spike: Research Bot"
    assert fields(payload)[-1] == "*Escalation*\nnow 5.0× the usual (first said at $2.00)"
    assert payload["text"].startswith(":warning: Escalation: Spend spike")
    budget = build_alert_message(alert(value=D(5), rule="daily_budget"), ctx)
    assert fields(budget)[-1] == "*Escalation*\n2.5× the $2.00 notified earlier today"


def test_digest_message() -> None:
    """The digest message has the day and total, projects largest first and the movers with their change."""
    digest = build_digest(
        dt.date(2026, 11, 27),
        {"p1": D(30), "p2": D(5)},
        {"p1": D(10), "p2": D(7)},
        {"p1": "A&B", "p2": "Two"},
    )
    payload = build_digest_message(digest)
    assert payload["blocks"][0]["text"]["text"] == "OpenAI spend on 2026-11-27: $35.00"
    assert payload["blocks"][1]["text"]["text"] == "*Total* $35.00 (baseline $17.00)"
    assert payload["blocks"][2]["text"]["text"] == "*Projects*\n• A&amp;B: $30.00\n• Two: $5.00"
    assert payload["blocks"][3]["text"]["text"] == (
        "*Top movers vs baseline*\n• A&amp;B: $30.00 (+$20.00 vs $10.00)\n• Two: $5.00 (-$2.00 vs $7.00)"
    )
    assert payload["text"] == ":bar_chart: OpenAI spend on 2026-11-27: $35.00"


def test_digest_message_long_and_empty() -> None:
    """A long digest lists 15 projects and counts the rest; an empty one says there was no spend."""
    many = build_digest(dt.date(2026, 11, 27), {f"p{i:02}": D(i + 1) for i in range(20)}, {}, {})
    text = build_digest_message(many)["blocks"][2]["text"]["text"]
    assert text.count("•") == 15 and text.endswith("… and 5 more")
    empty = build_digest_message(build_digest(dt.date(2026, 11, 27), {}, {}, {}))
    assert empty["blocks"][2]["text"]["text"] == "*Projects*\nno spend"
    assert len(empty["blocks"]) == 3


LONG = "R&D " * 2500  # 10,000 characters, 12,500 once escaped


def block_kit_problems(payload: dict[str, Any]) -> list[str]:
    """Every Block Kit limit the payload exceeds (https://api.slack.com/reference/block-kit/blocks)."""
    problems = [f"{len(payload['text'])} characters of fallback"] if len(payload["text"]) > 40_000 else []
    if len(payload["blocks"]) > 50:
        problems.append(f"{len(payload['blocks'])} blocks")
    for block in payload["blocks"]:
        limit = 150 if block["type"] == "header" else 3000
        if "text" in block and len(block["text"]["text"].encode("utf-16-le")) // 2 > limit:
            problems.append(f"{block['type']} text of {len(block['text']['text'])}")
        if len(block.get("fields", ())) > 10:
            problems.append(f"{len(block['fields'])} fields")
        problems += [f"field of {len(f['text'])}" for f in block.get("fields", ()) if len(f["text"]) > 2000]
        problems += [f"element of {len(e['text'])}" for e in block.get("elements", ()) if len(e["text"]) > 3000]
    return problems


@pytest.mark.parametrize("rule", ["spike", "runaway"])
def test_a_huge_project_name_fits_block_kit(rule: str) -> None:
    """A 10,000-character name is cut in the header and fields, the id stays shown, the fallback has it in full."""
    ctx = MessageContext(line_items=[(LONG, D(1)), ("o3", D(2))], details=[("Models", LONG)])
    payload = build_alert_message(alert(rule=rule, subject_name=LONG, subject_id="proj_" + "x" * 3000), ctx)
    assert block_kit_problems(payload) == []
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) == 150 and header.endswith("…")
    project = fields(payload)[0]
    assert project.startswith("*Project*\nR&amp;D R&amp;D") and "…\n`proj_xxx" in project and len(project) < 2000
    assert escape(LONG) in payload["text"]  # the full name, in the fallback
    assert "• o3: $2.00" in payload["blocks"][2]["text"]["text"]


def test_a_digest_of_long_names_fits_block_kit_and_lists_every_project() -> None:
    """A digest of 20 long names keeps its 15 rows with shortened names; the fallback has the full lines."""
    names = {f"p{i:02}": f"Project {i:02} " + "x" * 500 for i in range(20)}
    digest = build_digest(dt.date(2026, 11, 27), {p: D(i + 1) for i, p in enumerate(names)}, {}, names)
    payload = build_digest_message(digest)
    assert block_kit_problems(payload) == []
    projects = payload["blocks"][2]["text"]["text"]
    assert projects.count("•") == 15 and projects.endswith("… and 5 more")
    assert "• Project 19 xxx" in projects and "…: $20.00" in projects
    assert f"• {names['p19']}: $20.00" in payload["text"]
    assert payload["text"].startswith(":bar_chart: OpenAI spend on 2026-11-27: $210.00\n")


def test_fit_cuts_every_text_and_keeps_the_full_text_in_the_fallback() -> None:
    """Texts beyond their limit end in an ellipsis, extra fields and blocks go, the fallback keeps them all."""
    field = {"type": "mrkdwn", "text": "f" * 2500}
    payload = {
        "text": "summary",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "h" * 200}},
            {"type": "section", "fields": [field] * 12},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "c" * 4000}]},
            *[{"type": "section", "text": {"type": "mrkdwn", "text": f"s{i}"}} for i in range(60)],
        ],
    }
    fitted = fit(payload)
    assert block_kit_problems(fitted) == []
    assert fitted["blocks"][0]["text"]["text"] == "h" * 149 + "…"
    assert [len(f["text"]) for f in fitted["blocks"][1]["fields"]] == [2000] * 10
    assert fitted["blocks"][2]["elements"][0]["text"] == "c" * 2999 + "…"
    assert len(fitted["blocks"]) == 50
    assert fitted["text"].startswith("summary\n\n" + "h" * 200)
    assert fitted["text"].count("f" * 2500) == 12 and "c" * 4000 in fitted["text"] and "s59" in fitted["text"]
    assert fit({"text": "t" * 50_000, "blocks": []})["text"] == "t" * 39_999 + "…"
    short = build_alert_message(alert(), MessageContext(line_items=[("gpt-4o", D("3.1"))]))
    assert fit(short) == short


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde…"),
        ("ab&amp;cdef", 6, "ab…"),  # never half an escape
        ("ab&amp;cdef", 8, "ab&amp;…"),
        ("R&D R&D", 4, "R&D…"),  # a bare & (plain_text) is not an escape
        ("a&lt;bcdef", 7, "a&lt;b…"),
        ("😀😀😀😀", 6, "😀😀…"),  # two UTF-16 units each
    ],
)
def test_shorten(text: str, limit: int, expected: str) -> None:
    """`shorten` cuts to the limit with an ellipsis, never inside an escape, counting astral characters twice."""
    assert shorten(text, limit) == expected


def test_digest_row_change() -> None:
    """A digest row's change is its amount minus its baseline."""
    assert DigestRow("p", "P", D(3), D(5)).change == D(-2)


def test_slack_notifier_posts_payload(slack: FakeSlack) -> None:
    """The notifier posts the stored payload as JSON to the webhook path."""
    payload = build_alert_message(alert(), MessageContext(data_time=DATA_TIME))
    SlackNotifier(SecretStr(slack.url), backoff=0).send(outbox(payload))
    (post,) = slack.wait_for(1)
    assert post.path == WEBHOOK_PATH
    assert post.body == payload
    assert post.headers["Content-Type"].startswith("application/json")


def test_server_error_retried_once_in_call(slack: FakeSlack) -> None:
    """One 500 is retried within the call; two make the send fail with a NotifyError."""
    notifier = SlackNotifier(slack.url, backoff=0)
    slack.fail_next(1)
    notifier.send(outbox())
    assert [r.status for r in slack.requests] == [500, 200]
    slack.fail_next(2, status=503)
    with pytest.raises(NotifyError, match="answered 503: internal_error") as caught:
        notifier.send(outbox())
    assert [r.status for r in slack.requests] == [500, 200, 503, 503]
    assert getattr(caught.value, "retry_after", "missing") is None


def test_client_error_not_retried(slack: FakeSlack) -> None:
    """A 400 (Slack's invalid_payload) fails at once, without an in-call retry."""
    slack.fail_next(1, status=400, body="invalid_payload")
    with pytest.raises(NotifyError, match="answered 400: invalid_payload"):
        SlackNotifier(slack.url, backoff=0).send(outbox())
    assert len(slack.requests) == 1


def test_long_rate_limit_returns_retry_after(slack: FakeSlack) -> None:
    """A 429 asking for a long wait is not waited for in the call: the error carries the Retry-After."""
    slack.rate_limit_next(1, retry_after=30)
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(slack.url, backoff=0).send(outbox())
    assert caught.value.retry_after == 30.0
    assert len(slack.requests) == 1


@pytest.mark.parametrize(
    ("headers", "delay"),
    [({"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}, 3600.0), ({"Retry-After": "1e12"}, 3600.0), ({}, None)],
    ids=["far-date", "huge", "none"],
)
def test_long_or_missing_rate_limit_is_not_waited_for_in_call(
    slack: FakeSlack, headers: dict[str, str], delay: float | None
) -> None:
    """A 429 asking for a long wait (capped at an hour) or for none goes back to the outbox, not waited for."""
    slack.fail_next(1, status=429, body="rate_limited", headers=headers)
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(slack.url, backoff=0).send(outbox())
    assert caught.value.retry_after == delay
    assert len(slack.requests) == 1


def test_short_rate_limit_retried_in_call(slack: FakeSlack) -> None:
    """A 429 asking for a short wait is retried within the call."""
    slack.rate_limit_next(1, retry_after=0)
    SlackNotifier(slack.url, backoff=0, max_retry_after=0.5).send(outbox())
    assert [r.status for r in slack.requests] == [429, 200]


def test_unreachable_webhook_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    """A refused connection becomes a NotifyError; the URL is in no log line, error or repr, even at debug."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    caplog.set_level(logging.DEBUG)
    notifier = SlackNotifier(url, timeout=2, backoff=0)
    with pytest.raises(NotifyError, match=r"unreachable: URLError: .*Connection refused") as caught:
        notifier.send(outbox())
    assert not caught.value.maybe_delivered  # nothing went out: a retry cannot repeat it
    assert SECRET not in str(caught.value) and SECRET not in repr(notifier)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert SECRET not in caplog.text
    assert repr(notifier) == "SlackNotifier(webhook='http://127.0.0.1/…')"


def test_no_secret_in_logs_on_http_errors(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    """Retries and failures log nothing that contains the webhook URL, even with every logger at debug."""
    caplog.set_level(logging.DEBUG)
    notifier = SlackNotifier(slack.url, backoff=0, max_retry_after=0.5)
    slack.rate_limit_next(1, retry_after=0)
    notifier.send(outbox())
    slack.fail_next(2)
    with pytest.raises(NotifyError) as caught:
        notifier.send(outbox())
    assert SECRET not in caplog.text and SECRET not in str(caught.value)


def test_a_trickled_answer_ends_at_the_wall_clock_deadline(slack: FakeSlack) -> None:
    """An answer trickled a byte every 50 ms (each read within the timeout) still ends the send at the deadline."""
    slack.trickle_next(1, interval=0.05)
    started = time.monotonic()
    with pytest.raises(NotifyError, match=r"gave no answer within 1.5 s; it may have posted") as caught:
        SlackNotifier(slack.url, timeout=0.5, backoff=0).send(outbox())
    assert caught.value.maybe_delivered
    assert time.monotonic() - started < 2.0  # the whole answer would take about 4 s
    assert len(slack.requests) == 1


def test_a_late_answer_is_in_doubt_and_not_retried_in_call(slack: FakeSlack) -> None:
    """Slack taking the post but answering after the timeout is 'may have been delivered', tried only once."""
    slack.answer_late_next(1, delay=5)
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(slack.url, timeout=0.3, backoff=0).send(outbox())
    assert caught.value.maybe_delivered and SECRET not in str(caught.value)
    assert len(slack.requests) == 1 and len(slack.posts) == 1


def test_a_dropped_connection_after_the_request_is_not_retried_in_call(slack: FakeSlack) -> None:
    """A connection closed with no answer after the request went out is in doubt, so the call does not resend it."""
    slack.drop_next(1)
    with pytest.raises(NotifyError, match="RemoteDisconnected") as caught:
        SlackNotifier(slack.url, backoff=0).send(outbox())
    assert caught.value.maybe_delivered
    assert len(slack.requests) == 1


def test_a_hang_that_closes_without_an_answer_is_in_doubt(slack: FakeSlack) -> None:
    """Slack holding the post without a byte of answer (taken or not: the client cannot tell) is in doubt at the
    timeout, tried once in the call."""
    slack.hang_next(2, seconds=5, taken=True)
    slack.hang_next(1, seconds=5, taken=False)
    notifier = SlackNotifier(slack.url, timeout=0.3, backoff=0)
    for _ in range(2):
        with pytest.raises(NotifyError, match="gave no answer") as caught:
            notifier.send(outbox())
        assert caught.value.maybe_delivered
    assert [r.answered for r in slack.requests] == [False, False] and len(slack.posts) == 2


@pytest.mark.parametrize(("in_doubt", "factor"), [(0, 1), (1, 2), (2, 3), (7, 3)])
def test_a_message_in_doubt_waits_longer_for_its_answer(in_doubt: int, factor: int) -> None:
    """After a lost answer the next send waits longer for its own (twice, then three times the timeout, no more), so
    a slow Slack answers it instead of costing one more copy."""
    made: list[dict[str, Any]] = []

    class StandIn:
        def __init__(self, url: str, **kwargs: Any) -> None:
            made.append(kwargs)

        def send_dict(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> WebhookResponse:
            return WebhookResponse(url="", status_code=200, body="ok", headers={})

    notifier = SlackNotifier("https://hooks.example.invalid/services/x", timeout=4, client=StandIn)
    notifier.send(dataclasses.replace(outbox(), in_doubt=in_doubt))
    assert made[-1]["timeout"] == 4 * factor


def test_a_slow_answer_is_waited_for_once_the_message_is_in_doubt(slack: FakeSlack) -> None:
    """An answer 0.5 s late is lost at a 0.3 s timeout, and arrives in time for the same message in doubt."""
    slack.answer_late_next(2, delay=0.5)
    notifier = SlackNotifier(slack.url, timeout=0.3, backoff=0)
    with pytest.raises(NotifyError) as caught:
        notifier.send(outbox())
    assert caught.value.maybe_delivered
    notifier.send(dataclasses.replace(outbox(), in_doubt=1))
    assert len(slack.requests) == 2


def test_a_200_whose_body_breaks_off_is_in_doubt(slack: FakeSlack) -> None:
    """A 200 whose body breaks off is in doubt, not failed: the SDK reads the whole answer, so the outbox sends it
    again (one possible copy), never the call."""
    slack.fail_next(1, status=200, body="ok", headers={"Content-Length": "1000"})
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(slack.url, timeout=0.5, backoff=0).send(outbox())
    assert caught.value.maybe_delivered
    assert len(slack.requests) == 1


def test_sdk_log_lines_are_masked(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    """Should slack_sdk log at error level with the URL, our filter masks it before any handler sees it."""
    notifier = SlackNotifier(slack.url)
    assert isinstance(notifier._client, WebhookClient)
    sdk_logger = notifier._client.logger
    sdk_logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    sdk_logger.error("Failed to send a request to %s", slack.url)
    assert SECRET not in caplog.text
    assert "Failed to send a request to http://127.0.0.1/…" in caplog.text


@pytest.mark.parametrize("url", ["hooks.slack.com/services/T/B/" + SECRET, "ftp://x/" + SECRET, ""])
def test_invalid_url_rejected_without_echo(url: str) -> None:
    """A webhook URL that is not http(s) is a ConfigError that does not repeat the URL."""
    with pytest.raises(ConfigError) as caught:
        SlackNotifier(SecretStr(url))
    assert SECRET not in str(caught.value)


def test_log_notifier(caplog: pytest.LogCaptureFixture) -> None:
    """Without a webhook, each message is one readable warning line."""
    caplog.set_level(logging.INFO)
    LogNotifier(logging.getLogger("test.alerts")).send(outbox())
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "spike alert for proj_abc: hello | world"


def test_a_send_given_up_at_its_deadline_posts_nothing_more(slack: FakeSlack) -> None:
    """A 500 whose answer trickles past the deadline: the send is given up (in doubt) and its in-call retry, still
    running behind it, does not post again (only the outbox may, once)."""
    slack.trickle_next(1, interval=0.02, status=500, body="x")  # about 70 bytes: the answer ends after 1.4 s
    with pytest.raises(NotifyError) as caught:
        SlackNotifier(slack.url, timeout=0.3, backoff=0, max_retry_after=0).send(outbox())
    assert caught.value.maybe_delivered
    time.sleep(2.5)  # waiting for the abandoned thread's would-be retry, which runs on real sockets
    assert len(slack.requests) == 1


def test_the_http_client_is_injected() -> None:
    """With a stand-in client, a send goes through it (no socket), with the URL, the timeout and the retry
    handlers; its 200 is a delivery and its 429 a failure that asks for its Retry-After."""
    made: list[dict[str, Any]] = []
    answers = [WebhookResponse(url="", status_code=200, body="ok", headers={})]

    class StandIn:
        def __init__(self, url: str, **kwargs: Any) -> None:
            made.append({"url": url, **kwargs})

        def send_dict(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> WebhookResponse:
            made[-1]["body"] = body
            return answers.pop(0)

    notifier = SlackNotifier(f"https://hooks.example.invalid/services/{SECRET}", timeout=3, backoff=0, client=StandIn)
    notifier.send(outbox())
    assert made[-1]["url"].endswith(SECRET) and made[-1]["timeout"] == 3 and made[-1]["retry_handlers"]
    assert made[-1]["body"]["text"]
    answers.append(WebhookResponse(url="", status_code=429, body="rate_limited", headers={"Retry-After": ["7"]}))
    with pytest.raises(NotifyError) as caught:
        notifier.send(outbox())
    assert caught.value.retry_after == 7 and caught.value.status == 429 and not caught.value.maybe_delivered
    assert SECRET not in str(caught.value)
