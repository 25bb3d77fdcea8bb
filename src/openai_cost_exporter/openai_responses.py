"""What the OpenAI Admin API sends back, read into domain values: cost and project pages, cursors, errors.

Pure functions over decoded JSON bodies and `httpx.Response` headers, no I/O; every quirk they tolerate is in
openai-admin-api.md §7. Bad shapes raise `MalformedResponse`, quoting `where` (endpoint and page) so a log line
points at the culprit.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx

from openai_cost_exporter.errors import MalformedResponse
from openai_cost_exporter.models import UNATTRIBUTED, ZERO, CostPage, CostRow, Project, utc_day
from openai_cost_exporter.money import MONEY_CONTEXT
from openai_cost_exporter.retry_after import parse_retry_after

log = logging.getLogger(__name__)

MAX_MESSAGE = 300  # characters of a server message quoted in our errors


Json = dict[str, Any]


def server_message(response: httpx.Response) -> str:
    """The message of an error envelope, whose `error` may be an object or a bare string (§4)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        message: str = error["message"]
    elif isinstance(error, str) and error:
        message = error
    else:
        message = response.text.strip() or response.reason_phrase or "no message"
    return message[:MAX_MESSAGE]


def retry_after_seconds(response: httpx.Response, now: dt.datetime | None = None) -> float | None:
    """Seconds the server asks us to wait (see `retry_after`); None if absent or bad."""
    return parse_retry_after(response.headers.get("Retry-After"), date=response.headers.get("Date"), now=now)


def has_more_pages(body: Json, where: str) -> bool:
    """Whether the page says another follows; a missing `has_more` means no."""
    has_more = body.get("has_more", False)
    if not isinstance(has_more, bool):
        raise MalformedResponse(f"{where}: has_more is {has_more!r}, not a boolean")
    return has_more


def next_page_cursor(body: Json) -> str:
    """The costs cursor (`next_page`), or "" when there is none."""
    cursor = body.get("next_page")
    return cursor if isinstance(cursor, str) else ""


def next_after_cursor(body: Json) -> str:
    """`last_id`, or the id of the page's last project when `last_id` is missing."""
    last_id = body.get("last_id")
    if isinstance(last_id, str) and last_id:
        return last_id
    data = body.get("data")
    last = data[-1] if isinstance(data, list) and data else None
    return last["id"] if isinstance(last, dict) and isinstance(last.get("id"), str) else ""


def _list(container: Json, key: str, where: str) -> list[Any]:
    value = container.get(key)
    if not isinstance(value, list):
        raise MalformedResponse(f"{where}: `{key}` is {type(value).__name__}, not a list")
    return value


def _object(value: object, where: str) -> Json:
    if not isinstance(value, dict):
        raise MalformedResponse(f"{where}: expected an object, got {type(value).__name__}")
    return value


def parse_cost_page(body: Json, where: str, *, line_items: bool) -> CostPage:
    """One costs page as domain values; rows with the same key in a bucket are summed."""
    days: list[dt.date] = []
    rows: list[CostRow] = []
    for index, raw_bucket in enumerate(_list(body, "data", where)):
        bucket_where = f"{where}, bucket {index}"
        bucket = _object(raw_bucket, bucket_where)
        start_time = bucket.get("start_time")
        if not isinstance(start_time, int) or isinstance(start_time, bool):
            raise MalformedResponse(f"{bucket_where}: start_time is {start_time!r}, not a Unix time")
        day = utc_day(start_time)
        days.append(day)
        rows.extend(_bucket_rows(day, _list(bucket, "results", bucket_where), bucket_where, line_items))
    return CostPage(days=tuple(days), rows=tuple(rows))


def _bucket_rows(day: dt.date, results: Sequence[object], where: str, line_items: bool) -> list[CostRow]:
    sums: dict[tuple[str, str | None], Decimal] = {}
    for index, raw_result in enumerate(results):
        result_where = f"{where}, result {index}"
        result = _object(raw_result, result_where)
        # A null project_id is allowed by the schema even when grouped (§1.4); line_item may be filled
        # even when not grouped by it (§1.4), and is then dropped so that the project's rows are summed.
        project_id = _optional_str(result, "project_id", result_where) or UNATTRIBUTED
        key = (project_id, _optional_str(result, "line_item", result_where) if line_items else None)
        amount = parse_amount(result.get("amount"), result_where)
        sums[key] = MONEY_CONTEXT.add(sums[key], amount) if key in sums else amount
    return [CostRow(day, project_id, line_item, amount) for (project_id, line_item), amount in sums.items()]


def _optional_str(result: Json, key: str, where: str) -> str | None:
    value = result.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedResponse(f"{where}: {key} is {value!r}, not a string")
    return value or None


def parse_amount(amount: object, where: str) -> Decimal:
    """`amount` of a costs result in USD; its value may be a number or a string (§7.1)."""
    if amount is None:
        log.debug("%s: no amount; counted as 0", where)
        return ZERO
    fields = _object(amount, f"{where}, amount")
    value = fields.get("value")
    if value is None:
        log.debug("%s: amount.value is null; counted as 0", where)
        return ZERO
    currency = fields.get("currency")
    if not isinstance(currency, str) or currency.lower() != "usd":
        raise MalformedResponse(f"{where}: currency is {currency!r}, only usd is supported")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedResponse(f"{where}: amount.value is {value!r}, not a number")
    try:
        number = Decimal(str(value).strip())  # str() of a float keeps its printed digits
    except decimal.InvalidOperation:
        raise MalformedResponse(f"{where}: amount.value {value!r} is not a number") from None
    if not number.is_finite():
        raise MalformedResponse(f"{where}: amount.value {value!r} is not finite")
    return number if number else ZERO  # "0E-6176" would drag its exponent into every sum


def parse_projects(body: Json, where: str) -> list[Project]:
    """One projects page as domain values; a null name falls back to the id (§7.9)."""
    projects = []
    for index, raw in enumerate(_list(body, "data", where)):
        item = _object(raw, f"{where}, project {index}")
        project_id, name = item.get("id"), item.get("name")
        if not isinstance(project_id, str) or not project_id:
            raise MalformedResponse(f"{where}, project {index}: id is {project_id!r}, not a string")
        archived = item.get("archived_at") is not None or item.get("status") == "archived"
        projects.append(Project(project_id, name if isinstance(name, str) and name else project_id, archived))
    return projects
