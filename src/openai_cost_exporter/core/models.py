"""Domain values shared by the modules: projects, cost rows, pages.

Money is `Decimal` everywhere here; it becomes a float only when a metric sample is written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from openai_cost_exporter.core.money import ZERO as ZERO  # noqa: PLC0414 (re-export for the domain modules)

#: Label value for cost rows whose `project_id` is null (openai-admin-api.md §1.4, §7.3).
UNATTRIBUTED = "unattributed"

DAY = dt.timedelta(days=1)

#: `api_key_id` of spend outside API keys (the API sends null when grouped by key; §9), as stored and exported.
NO_API_KEY = "none"
#: The first day the costs endpoint groups by `api_key_id` (epoch 1764979200; openai-admin-api.md §9).
API_KEYS_EPOCH = dt.date(2025, 12, 6)


@dataclass(frozen=True, slots=True)
class Project:
    """A project of the organization, as `GET /organization/projects` lists it."""

    id: str
    name: str  # the id itself when the API sends a null name
    archived: bool = False


@dataclass(frozen=True, slots=True)
class CostRow:
    """One result of one daily bucket of `GET /organization/costs`."""

    day: dt.date  # the UTC day the bucket starts on
    project_id: str  # UNATTRIBUTED when the API sends null
    line_item: str | None  # None unless grouped by line_item
    amount_usd: Decimal
    api_key_id: str | None = None  # None unless grouped by api_key_id; NO_API_KEY for the API's null


@dataclass(frozen=True, slots=True)
class CostPage:
    """One page of the costs endpoint: its daily buckets, empty ones included."""

    days: tuple[dt.date, ...]
    rows: tuple[CostRow, ...]
    rejected: int = 0  # results dropped for an unparsable or absurd amount (sources.openai.responses.parse_amount)
    by_key: bool = False  # grouped by api_key_id: every row carries its key


def utc_day(timestamp: int) -> dt.date:
    """The UTC calendar day a Unix timestamp falls on."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date()


def day_start(day: dt.date) -> int:
    """Unix seconds of 00:00 UTC on `day`."""
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())


def end_of(day: dt.date) -> dt.datetime:
    """The instant `day` (UTC) closes: the next midnight."""
    return dt.datetime.combine(day + DAY, dt.time(), dt.UTC)


def next_month(day: dt.date) -> dt.date:
    """The 1st of the month after the one `day` falls in."""
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from start (inclusive) to end (exclusive)."""
    return [start + dt.timedelta(days=n) for n in range((end - start).days)]


#: `model` of usage rows whose model is null.
UNKNOWN_MODEL = "unknown"


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Token usage of one project and model in one bucket of a usage endpoint (openai-admin-api.md §3).

    Usage carries tokens and requests, never dollars: an estimate needs a price (`pricing`).
    """

    start: int  # Unix seconds of the bucket's start (UTC)
    project_id: str  # UNATTRIBUTED when the API sends null
    model: str  # UNKNOWN_MODEL when the API sends null
    kind: str  # the usage endpoint: "completions" or "embeddings"
    input_tokens: int  # includes the cached input tokens (§3)
    cached_input_tokens: int
    output_tokens: int
    requests: int
    batch: bool = False
    service_tier: str | None = None
    api_key_id: str | None = None  # only when grouped by api_key_id (the messages' top keys); NO_API_KEY for null


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key of a project, as `GET /organization/projects/{id}/api_keys` lists it."""

    id: str
    name: str  # the id itself when the API sends no name
    owner: str  # the user's or service account's name (or e-mail, or id); "" when the API names none
    owner_type: str  # "user", "service_account", or "" when unknown


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """A hard monthly spend limit: when the month's spend reaches it, OpenAI stops serving (§9)."""

    threshold_usd: Decimal  # the API's `threshold_amount` is in cents
    status: str  # `enforcement.status`: "inactive", or "enforcing" once spend reached it
