"""Slack Block Kit messages rendered from the outbox's neutral records (pure: no I/O).

Every payload is cut to Block Kit's limits (`fit`): Slack answers 400 to a text beyond its limit, and the outbox
would retry that message forever. Names are shortened in fields and lists, so one long name cannot push the
rest out; the fallback `text` keeps the full names and the full text of whatever was cut.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

from openai_cost_exporter.core.money import ratio, usd
from openai_cost_exporter.notify.messages import MessageContext, OutboxMessage, read_alert, read_digest
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
    ("spend_limit", "forecast"): "Hard spend limit ahead",
    ("spend_limit", "firing"): "Near the hard spend limit",
    ("spend_limit", "exceeded"): "Hard spend limit reached",
}
_KEY_HEADINGS = {
    "runaway": "*Top API keys, last 60 minutes (estimate)*",
    "spend_limit": "*Top API keys this month*",
}
_VALUE_LABELS = {"forecast": "Month-end forecast", "exceeded": "Month to date", "firing": "Today so far"}
_RUNAWAY_VALUE = "Estimated rate, last minutes"

# Block Kit's limits (https://api.slack.com/reference/block-kit/blocks, .../composition-objects#text).
HEADER_CHARS = 150  # a header's plain_text
SECTION_CHARS = 3000  # a section's text, a context element's text
FIELD_CHARS = 2000  # each of a section's fields
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
MAX_BLOCKS = 50
FALLBACK_CHARS = 40_000  # the top-level `text` (chat.postMessage truncates beyond it)
_NAME_CHARS = 200  # a project's name or id in a field
_LIST_NAME_CHARS = 80  # a name in a list: 15 rows of them fit in one section
_ELLIPSIS = "…"
_ENTITIES = ("&amp;", "&lt;", "&gt;")  # `escape`'s: a cut must not leave half of one


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


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the last one an ellipsis; counted in UTF-16 units, the stricter count,
    and never ending inside an `&amp;`-style escape."""
    if _units(text) <= limit:
        return text
    cut = text[: limit - 1]
    while (excess := _units(cut) - (limit - 1)) > 0:  # an astral character is two units
        cut = cut[: len(cut) - (excess + 1) // 2]
    amp = cut.rfind("&", len(cut) - 4)
    if amp >= 0 and any(entity.startswith(cut[amp:]) for entity in _ENTITIES):
        cut = cut[:amp]
    return cut + _ELLIPSIS


def _name(text: str, limit: int = _NAME_CHARS) -> str:
    return escape(shorten(text, limit))


def fit(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` within Block Kit's limits: each text cut with an ellipsis, extra fields and blocks dropped; the
    full text of everything cut is appended to the fallback `text`, itself capped."""
    cut: list[str] = []
    blocks = [_fit_block(block, cut) for block in payload["blocks"][:MAX_BLOCKS]]
    cut += [text for block in payload["blocks"][MAX_BLOCKS:] for text in _texts(block)]
    return {**payload, "text": shorten("\n\n".join([payload["text"], *cut]), FALLBACK_CHARS), "blocks": blocks}


def _fit_block(block: dict[str, Any], cut: list[str]) -> dict[str, Any]:
    block = dict(block)
    if "text" in block:
        block["text"] = _fit_text(block["text"], HEADER_CHARS if block["type"] == "header" else SECTION_CHARS, cut)
    if "fields" in block:
        cut += [field["text"] for field in block["fields"][MAX_FIELDS:]]
        block["fields"] = [_fit_text(field, FIELD_CHARS, cut) for field in block["fields"][:MAX_FIELDS]]
    if "elements" in block:
        cut += [element["text"] for element in block["elements"][MAX_CONTEXT_ELEMENTS:] if "text" in element]
        elements = block["elements"][:MAX_CONTEXT_ELEMENTS]
        block["elements"] = [_fit_text(e, SECTION_CHARS, cut) if "text" in e else e for e in elements]
    return block


def _fit_text(obj: dict[str, str], limit: int, cut: list[str]) -> dict[str, str]:
    short = shorten(obj["text"], limit)
    if short != obj["text"]:
        cut.append(obj["text"])
    return {**obj, "text": short}


def _texts(block: dict[str, Any]) -> list[str]:
    parts = [block.get("text"), *block.get("fields", ()), *block.get("elements", ())]
    return [part["text"] for part in parts if isinstance(part, dict) and "text" in part]


def _with_full_lines(fallback: str, shown: list[str], full: list[str]) -> str:
    """The fallback, followed by the full lines when names were shortened in the blocks."""
    return fallback if shown == full else "\n".join([fallback, *full])


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
        {"type": "header", "text": {"type": "plain_text", "text": f"{title}: {alert.subject_name}"}},
        {"type": "section", "fields": _alert_fields(alert, ctx)},
    ]
    text = f"{icon} {escape(title)}: {_summary(alert, ctx)}"
    if ctx.line_items:
        shown = [f"• {_name(name, _LIST_NAME_CHARS)}: {money(amount)}" for name, amount in ctx.line_items]
        full = [f"• {escape(name)}: {money(amount)}" for name, amount in ctx.line_items]
        blocks.append(_text_section("*Top line items today*\n" + "\n".join(shown)))
        text = _with_full_lines(text, shown, full)
    if ctx.keys:
        heading = _KEY_HEADINGS.get(alert.rule, "*Top API keys today*")
        shown = [_key_line(name, owner, amount, _LIST_NAME_CHARS) for name, owner, amount in ctx.keys]
        full = [_key_line(name, owner, amount, None) for name, owner, amount in ctx.keys]
        blocks.append(_text_section(heading + "\n" + "\n".join(shown)))
        text = _with_full_lines(text, shown, full)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _footer(alert, ctx)}]})
    return fit({"text": text, "blocks": blocks})


def _key_line(name: str, owner: str, amount: Decimal, width: int | None) -> str:
    who = f" ({_list_name(owner, width)})" if owner else ""
    return f"• {_list_name(name, width)}{who}: {money(amount)}"


def _limit_value_label(alert: Alert) -> str:
    return "Month-end forecast" if alert.level == "forecast" else "Month to date"


def _limit_fields(alert: Alert, ctx: MessageContext) -> list[dict[str, str]]:
    if alert.subject_id == ORGANIZATION:
        fields = [_field("Scope", "Whole organization")]
    else:
        fields = [_field("Project", f"{_name(alert.subject_name)}\n`{_name(alert.subject_id)}`")]
    fields.append(_field(_limit_value_label(alert), money(alert.value)))
    fields.append(_field("Hard limit (OpenAI's)", f"{money(alert.threshold)} a month"))
    fields += [_field(label, escape(text)) for label, text in ctx.details]
    return fields[:MAX_FIELDS]


def _runaway_fields(alert: Alert, ctx: MessageContext) -> list[dict[str, str]]:
    usual = money(alert.baseline) + "/h"
    fields = [
        _field("Project", f"{_name(alert.subject_name)}\n`{_name(alert.subject_id)}`"),
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
    if alert.rule == "spend_limit":
        return _limit_fields(alert, ctx)
    if alert.subject_id == ORGANIZATION:
        fields = [_field("Scope", "Whole organization")]
    else:
        fields = [_field("Project", f"{_name(alert.subject_name)}\n`{_name(alert.subject_id)}`")]
    fields.append(_field(_VALUE_LABELS[alert.level], money(alert.value)))
    fields.append(_field("Baseline", f"{money(alert.baseline)} (usual by now, {ctx.baseline_days} days of its kind)"))
    if alert.rule == "spike":
        fields.append(_field("Ratio", _ratio(alert.ratio) if alert.ratio is not None else "new spend"))
    else:
        kind = "Daily budget" if alert.rule == "daily_budget" else "Monthly budget"
        fields.append(_field(kind, money(alert.threshold)))
    if ctx.escalation and ctx.previous_value and alert.rule == "spike" and alert.ratio is not None:
        # A spike is one incident across days: it escalates on its ratio, not on a day's growing total.
        said = money(ctx.previous_value)
        fields.append(_field("Escalation", f"now {_ratio(alert.ratio)} the usual (first said at {said})"))
    elif ctx.escalation and ctx.previous_value:
        grown = _ratio(alert.value / ctx.previous_value)
        fields.append(_field("Escalation", f"{grown} the {money(ctx.previous_value)} notified earlier today"))
    return fields


def _summary(alert: Alert, ctx: MessageContext) -> str:
    who = "organization" if alert.subject_id == ORGANIZATION else f"{alert.subject_name} ({alert.subject_id})"
    if alert.rule == "runaway" and alert.level == "resolved":
        return escape(f"{who}: back to an estimated {money(alert.value)}/h, usual {money(alert.baseline)}/h (estimate)")
    if alert.rule == "runaway":
        versus = f"{_ratio(alert.ratio)} its usual" if alert.ratio is not None else "new spend"
        return escape(f"{who}: an estimated {money(alert.value)}/h over the last minutes, {versus} (estimate)")
    if alert.rule == "spend_limit":
        what = f"{_limit_value_label(alert).lower()} {money(alert.value)}"
        return escape(f"{who}: {what}, OpenAI's hard limit {money(alert.threshold)} a month")
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
    (projects, movers), full = _digest_lines(digest, _LIST_NAME_CHARS), _digest_lines(digest, None)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        _text_section(f"*Total* {money(digest.total)} (baseline {money(digest.baseline_total)})"),
        _text_section("*Projects*\n" + ("\n".join(projects) or "no spend")),
    ]
    if movers:
        blocks.append(_text_section("*Top movers vs baseline*\n" + "\n".join(movers)))
    text = _with_full_lines(f":bar_chart: {title}", [*projects, *movers], [*full[0], *full[1]])
    return fit({"text": text, "blocks": blocks})


def _digest_lines(digest: Digest, width: int | None) -> tuple[list[str], list[str]]:
    """The project lines and the mover lines of a digest, names shortened to `width` (None: in full)."""
    rows = [f"• {_list_name(r.name, width)}: {money(r.amount)}" for r in digest.rows[:_DIGEST_ROWS]]
    if len(digest.rows) > _DIGEST_ROWS:
        rows.append(f"… and {len(digest.rows) - _DIGEST_ROWS} more")
    return rows, [_mover(row, width) for row in digest.movers]


def _list_name(name: str, width: int | None) -> str:
    return escape(name) if width is None else _name(name, width)


def _mover(row: DigestRow, width: int | None) -> str:
    sign = "+" if row.change > 0 else "-"
    amounts = f"{money(row.amount)} ({sign}{money(abs(row.change))} vs {money(row.baseline)})"
    return f"• {_list_name(row.name, width)}: {amounts}"


def _text_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}
