"""Slack: Block Kit messages built from alerts (pure), and the notifiers that only send them.

The webhook URL is a secret: it never reaches a log line, an exception or a repr. slack_sdk's WebhookClient
logs the URL at debug/info level whenever its logger's *own* level is NOTSET or DEBUG, so it gets a private
logger set to CRITICAL (we report every failure ourselves) with a filter that masks the URL anyway.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from http.client import HTTPException
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

from pydantic import SecretStr
from slack_sdk.errors import SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient

from openai_cost_exporter.errors import ConfigError, NotifyError
from openai_cost_exporter.rules import ORGANIZATION, Alert, Digest, DigestRow

if TYPE_CHECKING:
    from openai_cost_exporter.notifications import OutboxMessage

logger = logging.getLogger(__name__)

#: The OpenAI usage page of one project; the organization's page is the part before "?".
PROJECT_USAGE_URL = "https://platform.openai.com/settings/organization/usage?project_id={project_id}"
_CENT = Decimal("0.01")
_TENTH = Decimal("0.1")
_DIGEST_ROWS = 15
_TITLES = {
    ("spike", "firing"): "Spend spike",
    ("daily_budget", "firing"): "Daily budget exceeded",
    ("monthly_budget", "forecast"): "Monthly budget forecast to be exceeded",
    ("monthly_budget", "exceeded"): "Monthly budget exceeded",
}
_VALUE_LABELS = {"forecast": "Month-end forecast", "exceeded": "Month to date", "firing": "Today so far"}


class DeliveryFailed(NotifyError):
    """Slack did not take the message; `retry_after` is the wait it asked for (429), if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Notifier(Protocol):
    def send(self, message: OutboxMessage) -> None:
        """Deliver one message, or raise NotifyError (it then stays in the outbox)."""
        ...


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What the caller adds to an alert once a message is decided."""

    line_items: Sequence[tuple[str, Decimal]] = ()  # top line items driving today's spend
    data_time: dt.datetime | None = None  # (UTC) of the data the alert was computed from
    baseline_days: int = 7
    escalation: bool = False
    previous_value: Decimal | None = None  # the value notified earlier today, for an escalation


# --- formatting -----------------------------------------------------------------------------------


def money(value: Decimal) -> str:
    """US dollars with thousands separators and cents: `$1,234.56`, `-$0.50`."""
    rounded = value.quantize(_CENT, rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.2f}"


def escape(text: str) -> str:
    """Escape the three characters Slack mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def usage_url(subject_id: str) -> str:
    """Link to the OpenAI usage page of a project (or of the organization)."""
    if subject_id == ORGANIZATION or not subject_id.startswith("proj_"):
        return PROJECT_USAGE_URL.split("?", 1)[0]
    return PROJECT_USAGE_URL.format(project_id=quote(subject_id, safe=""))


def _ratio(value: Decimal) -> str:
    return f"{value.quantize(_TENTH, rounding=ROUND_HALF_UP)}×"


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{value}"}


# --- alert message --------------------------------------------------------------------------------


def build_alert_message(alert: Alert, ctx: MessageContext) -> dict[str, Any]:
    """Block Kit payload (with a plain `text` fallback) for one alert."""
    title = _TITLES[(alert.rule, alert.level)]
    if ctx.escalation:
        title = f"Escalation: {title}"
    icon = ":rotating_light:" if alert.severity == "critical" else ":warning:"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{title}: {alert.subject_name}"[:150]}},
        {"type": "section", "fields": _alert_fields(alert, ctx)},
    ]
    if ctx.line_items:
        items = "\n".join(f"• {escape(name)}: {money(amount)}" for name, amount in ctx.line_items)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Top line items today*\n{items}"}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _footer(alert, ctx)}]})
    return {"text": f"{icon} {escape(title)}: {_summary(alert, ctx)}", "blocks": blocks}


def _alert_fields(alert: Alert, ctx: MessageContext) -> list[dict[str, str]]:
    if alert.subject_id == ORGANIZATION:
        fields = [_field("Scope", "Whole organization")]
    else:
        fields = [_field("Project", f"{escape(alert.subject_name)}\n`{escape(alert.subject_id)}`")]
    fields.append(_field(_VALUE_LABELS[alert.level], money(alert.value)))
    fields.append(_field("Baseline", f"{money(alert.baseline)} ({ctx.baseline_days}-day mean)"))
    if alert.rule == "spike":
        fields.append(_field("Ratio", _ratio(alert.ratio) if alert.ratio is not None else "new spend"))
    else:
        kind = "Daily budget" if alert.rule == "daily_budget" else "Monthly budget"
        fields.append(_field(kind, money(alert.threshold)))
    if ctx.escalation and ctx.previous_value:
        grown = _ratio(alert.value / ctx.previous_value)
        fields.append(_field("Escalation", f"{grown} the {money(ctx.previous_value)} notified earlier today"))
    return fields


def _summary(alert: Alert, ctx: MessageContext) -> str:
    who = "organization" if alert.subject_id == ORGANIZATION else f"{alert.subject_name} ({alert.subject_id})"
    what = f"{_VALUE_LABELS[alert.level].lower()} {money(alert.value)}"
    if alert.rule != "spike":
        return escape(f"{who}: {what}, budget {money(alert.threshold)}")
    versus = f"{_ratio(alert.ratio)} the" if alert.ratio is not None else "new spend; "
    return escape(f"{who}: {what}, {versus} {ctx.baseline_days}-day mean {money(alert.baseline)}")


def _footer(alert: Alert, ctx: MessageContext) -> str:
    when = f"Data as of {ctx.data_time:%Y-%m-%d %H:%M} UTC" if ctx.data_time is not None else "Data time unknown"
    return f"{when} · <{usage_url(alert.subject_id)}|OpenAI usage page>"


# --- digest message -------------------------------------------------------------------------------


def build_digest_message(digest: Digest) -> dict[str, Any]:
    """Block Kit payload for the daily digest: total, the largest projects, the top movers."""
    title = f"OpenAI spend on {digest.day.isoformat()}: {money(digest.total)}"
    rows = [f"• {escape(r.name)}: {money(r.amount)}" for r in digest.rows[:_DIGEST_ROWS]]
    if len(digest.rows) > _DIGEST_ROWS:
        rows.append(f"… and {len(digest.rows) - _DIGEST_ROWS} more")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        _text_section(f"*Total* {money(digest.total)} (baseline {money(digest.baseline_total)})"),
        _text_section("*Projects*\n" + ("\n".join(rows) or "no spend")),
    ]
    if digest.movers:
        blocks.append(_text_section("*Top movers vs baseline*\n" + "\n".join(map(_mover, digest.movers))))
    return {"text": f":bar_chart: {title}", "blocks": blocks}


def _mover(row: DigestRow) -> str:
    sign = "+" if row.change > 0 else "-"
    return f"• {escape(row.name)}: {money(row.amount)} ({sign}{money(abs(row.change))} vs {money(row.baseline)})"


def _text_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# --- notifiers ------------------------------------------------------------------------------------


class LogNotifier:
    """No webhook configured: every message becomes one readable log line."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log

    def send(self, message: OutboxMessage) -> None:
        text = str(message.payload.get("text", "")).replace("\n", " | ")
        self._log.warning("%s alert for %s: %s", message.rule, message.subject_id, text)


class SlackNotifier:
    """Posts outbox payloads to a Slack incoming webhook with slack_sdk's WebhookClient."""

    def __init__(
        self,
        webhook_url: SecretStr | str,
        *,
        timeout: float = 10,
        client: WebhookClient | None = None,
        backoff: float = 0.5,
        max_retry_after: float = 2.0,
    ) -> None:
        url = webhook_url.get_secret_value() if isinstance(webhook_url, SecretStr) else webhook_url
        if not url.startswith(("https://", "http://")):
            # checked here: slack_sdk would put the whole URL into its SlackRequestError
            raise ConfigError("the Slack webhook URL must start with https://")
        self._mask = _Masker(url)
        self._client = client or WebhookClient(
            url,
            timeout=timeout,  # type: ignore[arg-type]  # urllib takes a float; the SDK annotates int
            logger=_sdk_logger(self._mask),
            retry_handlers=retry_handlers(backoff=backoff, max_retry_after=max_retry_after),
        )

    def __repr__(self) -> str:
        return f"SlackNotifier(webhook={self._mask.shown!r})"

    def send(self, message: OutboxMessage) -> None:
        try:
            response = self._client.send_dict(message.payload)
        except (OSError, HTTPException, SlackClientError, ValueError) as err:
            detail = self._mask(f"{type(err).__name__}: {err}")
            raise DeliveryFailed(f"Slack webhook {self._mask.shown} unreachable: {detail}") from None
        if response.status_code != 200:
            body = self._mask(str(response.body))[:200]
            raise DeliveryFailed(
                f"Slack webhook {self._mask.shown} answered {response.status_code}: {body}",
                retry_after=_retry_after(response.headers) if response.status_code == 429 else None,
            )


class _Masker:
    """Replaces the webhook URL (and its secret path alone) by `scheme://host/…`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.shown = f"{parts.scheme}://{parts.hostname}/…"
        self._secrets = [s for s in (url, parts.path) if len(s) > 1]

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, self.shown)
        return text


class _MaskFilter(logging.Filter):
    def __init__(self, mask: Callable[[str], str]) -> None:
        super().__init__()
        self._mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._mask(record.getMessage()), None
        return True


def _sdk_logger(mask: Callable[[str], str]) -> logging.Logger:
    # A private Logger (not registered in logging's manager, so nothing global changes), propagating to ours.
    sdk = logging.Logger(f"{__name__}.sdk", logging.CRITICAL)
    sdk.parent = logger
    sdk.addFilter(_MaskFilter(mask))
    return sdk


def _retry_after(headers: Any) -> float | None:
    for key, value in dict(headers).items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(float(raw), 0.0)
            except ValueError:
                return None
    return None


class _ShortRateLimitHandler(RateLimitErrorRetryHandler):
    """Retries a 429 in the call only when Slack asks for a short wait; longer ones go back to the outbox."""

    def __init__(self, max_retry_after: float, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(max_retry_count=1)
        self._max = max_retry_after
        self._sleep = sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response.headers)
        return wait is not None and wait <= self._max

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        wait = _retry_after(response.headers) if response is not None else None
        self._sleep(wait or 0.0)
        state.increment_current_attempt()


def retry_handlers(*, backoff: float = 0.5, max_retry_after: float = 2.0) -> list[RetryHandler]:
    """One in-call retry for connection errors, 500/503 and short 429s; the outbox retries across cycles."""
    # One retry, so a fixed pause (the SDK's default calculator adds up to 1 s of random jitter to it).
    interval = FixedValueRetryIntervalCalculator(backoff)
    return [
        ConnectionErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
        ServerErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
        _ShortRateLimitHandler(max_retry_after),
    ]
