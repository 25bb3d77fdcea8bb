"""Messages between deciding and sending: what the outbox stores, and what a notifier is.

The outbox stores a neutral record of the alert (or digest) and of its context, not a Slack payload: the
notifier renders it when it sends (slack_blocks.py for Slack, one log line for the log), so deciding and
sending know nothing of each other, and a second notifier needs no change here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from openai_cost_exporter.rules import Alert, Digest, DigestRow

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What the cycle adds to an alert once a message is decided."""

    line_items: Sequence[tuple[str, Decimal]] = ()  # top line items driving today's spend
    data_time: dt.datetime | None = None  # (UTC) of the data the alert was computed from
    baseline_days: int = 7
    escalation: bool = False
    previous_value: Decimal | None = None  # the value notified earlier today, for an escalation
    details: Sequence[tuple[str, str]] = ()  # extra (label, text) lines a rule wants shown
    keys: Sequence[tuple[str, str, Decimal]] = ()  # (name, owner, amount) of the top API keys driving the spend


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A decided message: its neutral record, and where its delivery stands."""

    id: int
    rule: str
    subject_id: str
    day: dt.date
    level: str
    escalation: bool
    record: Record
    created_at: dt.datetime
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    in_doubt: int = 0  # attempts that may have been delivered (no answer came back, or its record was lost)
    sending_at: dt.datetime | None = None  # set while an attempt is under way; left set by a crash


class Notifier(Protocol):
    def send(self, message: OutboxMessage) -> None:
        """Lay out and deliver one message, or raise NotifyError (it then stays in the outbox), with
        `maybe_delivered` when it may have arrived anyway and `retry_after` when the target asked for a wait."""
        ...


def alert_record(alert: Alert, ctx: MessageContext) -> Record:
    """The alert and its context as JSON-ready data."""
    return {"kind": "alert", "alert": _plain(dataclasses.asdict(alert)), "context": _plain(_context_dict(ctx))}


def digest_record(digest: Digest) -> Record:
    return {"kind": "digest", "digest": _plain(dataclasses.asdict(digest))}


def read_alert(record: Record) -> tuple[Alert, MessageContext]:
    """The alert and context of an `alert_record`."""
    raw, ctx = record["alert"], record["context"]
    alert = Alert(
        **{
            **raw,
            **{k: _decimal(raw[k]) for k in ("value", "threshold", "baseline", "ratio")},
            "since": dt.date.fromisoformat(raw["since"]) if raw.get("since") else None,
        }
    )
    context = MessageContext(
        line_items=[(name, Decimal(amount)) for name, amount in ctx["line_items"]],
        data_time=dt.datetime.fromisoformat(ctx["data_time"]) if ctx["data_time"] else None,
        baseline_days=ctx["baseline_days"],
        escalation=ctx["escalation"],
        previous_value=_decimal(ctx["previous_value"]),
        details=[(label, text) for label, text in ctx.get("details", [])],
        keys=[(name, owner, Decimal(amount)) for name, owner, amount in ctx.get("keys", [])],
    )
    return alert, context


def read_digest(record: Record) -> Digest:
    raw = record["digest"]

    def rows(items: list[dict[str, Any]]) -> tuple[DigestRow, ...]:
        return tuple(DigestRow(r["project_id"], r["name"], Decimal(r["amount"]), Decimal(r["baseline"])) for r in items)

    return Digest(
        day=dt.date.fromisoformat(raw["day"]),
        total=Decimal(raw["total"]),
        baseline_total=Decimal(raw["baseline_total"]),
        rows=rows(raw["rows"]),
        movers=rows(raw["movers"]),
    )


def _context_dict(ctx: MessageContext) -> dict[str, Any]:
    return {
        "line_items": [[name, amount] for name, amount in ctx.line_items],
        "data_time": ctx.data_time,
        "baseline_days": ctx.baseline_days,
        "escalation": ctx.escalation,
        "previous_value": ctx.previous_value,
        "details": [[label, text] for label, text in ctx.details],
        "keys": [[name, owner, amount] for name, owner, amount in ctx.keys],
    }


def _plain(value: Any) -> Any:
    """Decimals as exact strings, dates as ISO text, tuples as lists: JSON that reads back losslessly."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):  # datetimes included
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
