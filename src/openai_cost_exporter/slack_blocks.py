"""Slack Block Kit messages rendered from the outbox's neutral records (pure: no I/O)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from openai_cost_exporter.messages import MessageContext, OutboxMessage, read_alert, read_digest
from openai_cost_exporter.money import ratio, usd
from openai_cost_exporter.rules import ORGANIZATION, Alert, Digest, DigestRow

#: The OpenAI usage page of one project; the organization's page is the part before "?".
PROJECT_USAGE_URL = "https://platform.openai.com/settings/organization/usage?project_id={project_id}"
_DIGEST_ROWS = 15
_TITLES = {
    ("spike", "firing"): "Spend spike",
    ("runaway", "firing"): "Runaway spend (estimate)",
    ("runaway", "resolved"): "Runaway over (estimate)",
    ("daily_budget", "firing"): "Daily budget exceeded",
    ("monthly_budget", "forecast"): "Monthly budget forecast to be exceeded",
    ("monthly_budget", "exceeded"): "Monthly budget exceeded",
}
_VALUE_LABELS = {"forecast": "Month-end forecast", "exceeded": "Month to date", "firing": "Today so far"}
_RUNAWAY_VALUE = "Estimated spend, last 60 minutes"


def render(message: OutboxMessage) -> dict[str, Any]:
    """The Block Kit payload (with its plain `text` fallback) of an outbox message."""
    record = message.record
    if record.get("kind") == "alert":
        return build_alert_message(*read_alert(record))
    if record.get("kind") == "digest":
        return build_digest_message(read_digest(record))
    return record  # written by 0.1, which stored the Slack payload itself


# --- formatting -----------------------------------------------------------------------------------


money = usd


def escape(text: str) -> str:
    """Escape the three characters Slack mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def usage_url(subject_id: str) -> str:
    """Link to the OpenAI usage page of a project (or of the organization)."""
    if subject_id == ORGANIZATION or not subject_id.startswith("proj_"):
        return PROJECT_USAGE_URL.split("?", 1)[0]
    return PROJECT_USAGE_URL.format(project_id=quote(subject_id, safe=""))


_ratio = ratio


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


def _runaway_fields(alert: Alert, ctx: MessageContext) -> list[dict[str, str]]:
    usual = money(alert.baseline) + "/h"
    fields = [
        _field("Project", f"{escape(alert.subject_name)}\n`{escape(alert.subject_id)}`"),
        _field(_RUNAWAY_VALUE, f"{money(alert.value)}/h (estimate)"),
        _field("Usual for this hour", f"{usual} ({_ratio(alert.ratio)} usual)" if alert.ratio else f"{usual} (new)"),
    ]
    fields += [_field(label, escape(text)) for label, text in ctx.details]
    if ctx.escalation and ctx.previous_value:
        fields.append(_field("Escalation", f"{_ratio(alert.value / ctx.previous_value)} the rate notified earlier"))
    return fields[:10]  # Block Kit: at most 10 fields in a section


def _alert_fields(alert: Alert, ctx: MessageContext) -> list[dict[str, str]]:
    if alert.rule == "runaway":
        return _runaway_fields(alert, ctx)
    if alert.subject_id == ORGANIZATION:
        fields = [_field("Scope", "Whole organization")]
    else:
        fields = [_field("Project", f"{escape(alert.subject_name)}\n`{escape(alert.subject_id)}`")]
    fields.append(_field(_VALUE_LABELS[alert.level], money(alert.value)))
    fields.append(_field("Baseline", f"{money(alert.baseline)} (usual by now, {ctx.baseline_days} days of its kind)"))
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
    if alert.rule == "runaway" and alert.level == "resolved":
        return escape(f"{who}: back to an estimated {money(alert.value)}/h, usual {money(alert.baseline)}/h (estimate)")
    if alert.rule == "runaway":
        versus = f"{_ratio(alert.ratio)} its usual" if alert.ratio is not None else "new spend"
        return escape(f"{who}: an estimated {money(alert.value)}/h over the last 60 minutes, {versus} (estimate)")
    what = f"{_VALUE_LABELS[alert.level].lower()} {money(alert.value)}"
    if alert.rule != "spike":
        return escape(f"{who}: {what}, budget {money(alert.threshold)}")
    versus = f"{_ratio(alert.ratio)} the" if alert.ratio is not None else "new spend; "
    return escape(f"{who}: {what}, {versus} usual by now {money(alert.baseline)}")


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
