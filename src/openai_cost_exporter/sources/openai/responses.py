"""What the OpenAI Admin API sends back, read into domain values: cost and project pages, cursors, errors.

Pure functions over decoded JSON bodies and `httpx.Response` headers, no I/O; every quirk they tolerate is in
openai-admin-api.md §7. Bad shapes raise `MalformedResponse`, quoting `where` (endpoint and page) so a log line
points at the culprit. Values are bounded here, at the edge: text that UTF-8 cannot encode is repaired
(`clean_text`), a cost result whose amount is unparsable or absurd is dropped with one warning and counted
(`CostPage.rejected`), and a day's bucket that repeats on a page is counted once.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import re
from collections.abc import Callable, Hashable, Iterator, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from openai_cost_exporter.core.errors import MalformedResponse
from openai_cost_exporter.core.models import NO_API_KEY, UNATTRIBUTED, ZERO, CostPage, CostRow, Project, utc_day
from openai_cost_exporter.core.money import MONEY_CONTEXT
from openai_cost_exporter.core.retry_after import parse_retry_after

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

MAX_MESSAGE = 300  # characters of a server message quoted in our errors
#: Beyond this many dollars one result (a project's line item on one day) is not a bill but a broken figure:
#: "1e30" or "1e999999999" would overflow the page, the snapshot and Slack's formatting further on.
MAX_AMOUNT_USD = Decimal("1e12")
#: Significant digits one amount may carry; the API sends up to 39 (§7.1), a 5,000-digit figure is not money.
MAX_AMOUNT_DIGITS = 60
#: The smallest non-zero amount kept, by its exponent: 1E-60 USD and below is noise in a broken number.
MIN_AMOUNT_EXPONENT = -60
_QUOTED = 60  # characters of a rejected value or a project id quoted in a log line
# JSON's "\ud800" decodes to a lone surrogate, which UTF-8 (SQLite, logs, Slack) cannot encode.
_SURROGATE = re.compile("[\ud800-\udfff]")


Json = dict[str, Any]


class _RejectedAmount(ValueError):
    """An amount too broken to count; its row is dropped, never the page."""


def decode_json(content: bytes) -> Any:
    """The JSON value of a body. An integer too long for `int` (over 4,300 digits, `sys.get_int_max_str_digits`)
    stays its digits, a string: the amount checks then reject its one row, where a ValueError would have made
    the whole page invalid JSON, retried and lost. The hook runs only for a body that fails without it: called for
    every integer, it made decoding a usage page a third slower."""
    try:
        return json.loads(content)
    except ValueError:  # invalid JSON, or an integer over the limit: decoded again, the hook keeping its digits
        return json.loads(content, parse_int=_int_or_digits)


def _int_or_digits(literal: str) -> int | str:
    try:
        return int(literal)
    except ValueError:
        return literal


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so that it can be stored, logged and sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _quote(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= _QUOTED else f"{shown[:_QUOTED]}… ({len(shown)} characters)"


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
    return clean_text(message[:MAX_MESSAGE])


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
        return clean_text(last_id)
    data = body.get("data")
    last = data[-1] if isinstance(data, list) and data else None
    return clean_text(last["id"]) if isinstance(last, dict) and isinstance(last.get("id"), str) else ""


def _list(container: Json, key: str, where: str) -> list[Any]:
    value = container.get(key)
    if not isinstance(value, list):
        raise MalformedResponse(f"{where}: `{key}` is {type(value).__name__}, not a list")
    return value


def _object(value: object, where: str) -> Json:
    if not isinstance(value, dict):
        raise MalformedResponse(f"{where}: expected an object, got {type(value).__name__}")
    return value


def unique_buckets(
    page: Json, where: str, key: Callable[[Json, str], K], shown: str = ""
) -> Iterator[tuple[K, list[Any], str]]:
    """(key, results, where) of each bucket of a page, once: counting a repeated bucket twice would double its
    figures, so the first one wins and a repeat is skipped with one warning naming it (`shown` before the key)."""
    seen: set[K] = set()
    for index, raw_bucket in enumerate(_list(page, "data", where)):
        bucket_where = f"{where}, bucket {index}"
        bucket = _object(raw_bucket, bucket_where)
        bucket_key = key(bucket, bucket_where)
        results = _list(bucket, "results", bucket_where)
        if bucket_key in seen:
            log.warning("%s: %s%s repeats an earlier bucket of the page; ignored", bucket_where, shown, bucket_key)
            continue
        seen.add(bucket_key)
        yield bucket_key, results, bucket_where


def parse_cost_page(body: Json, where: str, *, line_items: bool, api_keys: bool = False) -> CostPage:
    """One costs page as domain values; rows with the same key in a bucket are summed, a repeated day skipped."""
    days: list[dt.date] = []
    rows: list[CostRow] = []
    rejected = 0
    for day, results, bucket_where in unique_buckets(body, where, _bucket_day):
        days.append(day)
        bucket_rows, bucket_rejected = _bucket_rows(day, results, bucket_where, line_items, api_keys)
        rows.extend(bucket_rows)
        rejected += bucket_rejected
    return CostPage(days=tuple(days), rows=tuple(rows), rejected=rejected, by_key=api_keys)


def _bucket_day(bucket: Json, where: str) -> dt.date:
    start_time = bucket.get("start_time")
    if not isinstance(start_time, int) or isinstance(start_time, bool):
        raise MalformedResponse(f"{where}: start_time is {start_time!r}, not a Unix time")
    try:
        return utc_day(start_time)
    except (OverflowError, OSError, ValueError):  # "year 33715 is out of range" and its kin
        raise MalformedResponse(f"{where}: start_time {start_time} is out of range") from None


def _bucket_rows(
    day: dt.date, results: Sequence[object], where: str, line_items: bool, api_keys: bool
) -> tuple[list[CostRow], int]:
    sums: dict[tuple[str, str | None, str | None], Decimal] = {}
    rejected = 0
    for index, raw_result in enumerate(results):
        result_where = f"{where}, result {index}"
        result = _object(raw_result, result_where)
        # A null project_id is allowed by the schema even when grouped (§1.4); line_item may be filled
        # even when not grouped by it (§1.4), and is then dropped so that the project's rows are summed.
        project_id = _optional_str(result, "project_id", result_where) or UNATTRIBUTED
        line_item = _optional_str(result, "line_item", result_where) if line_items else None
        # A null key is spend outside API keys (§9): its own series, never dropped.
        api_key_id = (_optional_str(result, "api_key_id", result_where) or NO_API_KEY) if api_keys else None
        try:
            amount = parse_amount(result.get("amount"), result_where)
        except _RejectedAmount as exc:
            log.warning("%s: cost of project %s on %s rejected: %s", result_where, _quote(project_id), day, exc)
            rejected += 1
            continue
        key = (project_id, line_item, api_key_id)
        sums[key] = MONEY_CONTEXT.add(sums[key], amount) if key in sums else amount
    rows = [CostRow(day, pid, item, amount, key_id) for (pid, item, key_id), amount in sums.items()]
    return rows, rejected


def _optional_str(result: Json, key: str, where: str) -> str | None:
    value = result.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedResponse(f"{where}: {key} is {value!r}, not a string")
    return clean_text(value) if value else None


def parse_amount(amount: object, where: str) -> Decimal:
    """`amount` of a costs result in USD; its value may be a number or a string (§7.1).

    A currency other than usd raises `MalformedResponse` (the page cannot be read); a value that is not a
    number, not finite or absurd (`_check_amount`) raises `_RejectedAmount`, which drops only its result.
    """
    if amount is None:
        log.debug("%s: no amount; counted as 0", where)
        return ZERO
    if not isinstance(amount, dict):
        raise _RejectedAmount(f"amount is {_quote(amount)}, not an object")
    value = amount.get("value")
    if value is None:
        log.debug("%s: amount.value is null; counted as 0", where)
        return ZERO
    currency = amount.get("currency")
    if not isinstance(currency, str) or currency.lower() != "usd":
        raise MalformedResponse(f"{where}: currency is {currency!r}, only usd is supported")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _RejectedAmount(f"amount.value is {_quote(value)}, not a number")
    try:
        number = Decimal(str(value).strip())  # str() of a float keeps its printed digits
    except (decimal.InvalidOperation, ValueError):  # ValueError: str() of an int beyond 4,300 digits
        raise _RejectedAmount(f"amount.value {_quote(value)} is not a number") from None
    if not number:
        return ZERO  # "0E-6176" would drag its exponent into every sum
    _check_amount(number, value)
    return number


def _check_amount(number: Decimal, value: object) -> None:
    if not number.is_finite():
        raise _RejectedAmount(f"amount.value {_quote(value)} is not finite")
    if len(number.as_tuple().digits) > MAX_AMOUNT_DIGITS:
        raise _RejectedAmount(f"amount.value {_quote(value)} has more than {MAX_AMOUNT_DIGITS} digits")
    # copy_abs(), not abs(): abs() rounds in the context and overflows on 1e999999999
    if number.adjusted() < MIN_AMOUNT_EXPONENT or number.copy_abs() > MAX_AMOUNT_USD:
        raise _RejectedAmount(f"amount.value {_quote(value)} is out of range (at most {MAX_AMOUNT_USD} USD)")


def parse_projects(body: Json, where: str) -> list[Project]:
    """One projects page as domain values; a null name falls back to the id (§7.9)."""
    projects = []
    for index, raw in enumerate(_list(body, "data", where)):
        item = _object(raw, f"{where}, project {index}")
        project_id, name = item.get("id"), item.get("name")
        if not isinstance(project_id, str) or not project_id:
            raise MalformedResponse(f"{where}, project {index}: id is {project_id!r}, not a string")
        archived = item.get("archived_at") is not None or item.get("status") == "archived"
        project_id, name = clean_text(project_id), clean_text(name) if isinstance(name, str) and name else ""
        projects.append(Project(project_id, name or project_id, archived))
    return projects
