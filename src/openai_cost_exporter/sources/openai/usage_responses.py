"""Pages of the usage endpoints (`/organization/usage/completions` and `/usage/embeddings`) read into `UsageRow`s.

Pure functions over decoded JSON bodies, no I/O, in the style of `responses`: the envelope is the costs
one (openai-admin-api.md §1.2, §3), bad shapes raise `MalformedResponse` quoting `where`. Pages are expected to be
grouped by `project_id` and `model` (and optionally `batch`, `service_tier`); any `bucket_width` is read alike.
Usage carries tokens, never dollars (§3, §7.13): `pricing` turns rows into estimates. As with costs, a lone
surrogate in a project id, model or service tier becomes U+FFFD (`responses._optional_str`).
`usage_query` writes the other way: the query of a usage request, its `limit` checked against the width's maximum.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from openai_cost_exporter.core.errors import MalformedResponse
from openai_cost_exporter.core.models import NO_API_KEY, UNATTRIBUTED, UNKNOWN_MODEL, UsageRow
from openai_cost_exporter.sources.openai.responses import Json, _object, _optional_str, unique_buckets

log = logging.getLogger(__name__)

#: The usage endpoints this module reads, as `UsageRow.kind` names them.
KINDS = ("completions", "embeddings")

#: The most buckets per usage page for each `bucket_width` read (§3): a larger `limit` is refused with a 400, not
#: clamped (§9), so it is refused here before it is sent.
MAX_LIMITS = {"1m": 1440, "1h": 168}

# (start, project_id, model, batch, service_tier): rows with the same key in a page are added up (they differ
# only by a dimension we did not group by, e.g. user_id or api_key_id).
_Key = tuple[int, str, str, bool, str | None, str | None]  # start, project, model, batch, tier, api key
# input, cached input, output, requests
_Counts = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class UsagePage:
    """One page of a usage endpoint: the start of every bucket on it (empty ones included) and its rows."""

    buckets: tuple[int, ...]  # Unix seconds of each bucket's start_time, in page order, without repeats
    rows: tuple[UsageRow, ...]


def result_object(kind: str) -> str:
    """The `object` of a result of the usage endpoint `kind`, e.g. `organization.usage.completions.result`."""
    if kind not in KINDS:
        raise ValueError(f"usage kind {kind!r} is not one of {', '.join(KINDS)}")
    return f"organization.usage.{kind}.result"


def usage_query(
    start: int, end: int, width: str, limit: int, *, api_keys: bool, project_ids: Sequence[str]
) -> list[tuple[str, str | int]]:
    """The query of a usage request for [start, end) in `width` buckets, by project and model (and API key)."""
    if width not in MAX_LIMITS or not 1 <= limit <= MAX_LIMITS[width]:
        raise ValueError(f"bucket_width {width!r} takes a limit of 1..{MAX_LIMITS.get(width, 0)}, not {limit}")
    query: list[tuple[str, str | int]] = [("start_time", start), ("end_time", end), ("bucket_width", width)]
    query += [("group_by", "project_id"), ("group_by", "model")]
    if api_keys:
        query.append(("group_by", "api_key_id"))
    query += [("project_ids", project_id) for project_id in project_ids]
    query.append(("limit", limit))
    return query


def parse_usage_page(body: object, where: str, *, kind: str, api_keys: bool = False) -> UsagePage:
    """One usage page as domain values; rows with the same key in a bucket are summed, a repeated bucket skipped."""
    expected = result_object(kind)
    page = _object(body, where)
    if page.get("object") != "page":
        raise MalformedResponse(f"{where}: object is {page.get('object')!r}, not 'page'")
    buckets: list[int] = []
    sums: dict[_Key, _Counts] = {}
    for start, results, bucket_where in unique_buckets(page, where, _bucket_start, "start_time "):
        buckets.append(start)
        _add_results(sums, start, results, bucket_where, kind, expected, api_keys)
    return UsagePage(buckets=tuple(buckets), rows=tuple(_row(key, counts, kind) for key, counts in sums.items()))


def _row(key: _Key, counts: _Counts, kind: str) -> UsageRow:
    start, project_id, model, batch, service_tier, api_key_id = key
    input_tokens, cached_input_tokens, output_tokens, requests = counts
    return UsageRow(
        start=start,
        project_id=project_id,
        model=model,
        kind=kind,
        input_tokens=input_tokens,
        cached_input_tokens=cached_input_tokens,
        output_tokens=output_tokens,
        requests=requests,
        batch=batch,
        service_tier=service_tier,
        api_key_id=api_key_id,
    )


def _bucket_start(bucket: Json, where: str) -> int:
    if bucket.get("object") != "bucket":
        raise MalformedResponse(f"{where}: object is {bucket.get('object')!r}, not 'bucket'")
    start_time, end_time = _unix_time(bucket, "start_time", where), _unix_time(bucket, "end_time", where)
    if end_time <= start_time:
        raise MalformedResponse(f"{where}: end_time {end_time} is not after start_time {start_time}")
    return start_time


def _unix_time(bucket: Json, key: str, where: str) -> int:
    value = bucket.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedResponse(f"{where}: {key} is {value!r}, not a Unix time")
    return value


def _add_results(
    sums: dict[_Key, _Counts],
    start: int,
    results: Sequence[object],
    where: str,
    kind: str,
    expected: str,
    api_keys: bool,
) -> None:
    for index, raw_result in enumerate(results):
        result_where = f"{where}, result {index}"
        result = _object(raw_result, result_where)
        if result.get("object") != expected:
            raise MalformedResponse(f"{result_where}: object is {result.get('object')!r}, not {expected!r}")
        key = _result_key(start, result, result_where, kind, api_keys)
        counts = _result_counts(result, result_where, kind)
        previous = sums.get(key)
        sums[key] = counts if previous is None else _add(previous, counts)


def _result_key(start: int, result: Json, where: str, kind: str, api_keys: bool) -> _Key:
    # Null dimensions: unattributed usage, or a page not grouped by that field (§7.3).
    project_id = _optional_str(result, "project_id", where) or UNATTRIBUTED
    model = _optional_str(result, "model", where) or UNKNOWN_MODEL
    # Read only when grouped by it: a filled field of a page not grouped by it would split the stored rows.
    api_key_id = (_optional_str(result, "api_key_id", where) or NO_API_KEY) if api_keys else None
    if kind != "completions":  # embeddings have neither batch nor service_tier (§3)
        return (start, project_id, model, False, None, api_key_id)
    batch = result.get("batch")
    if batch is not None and not isinstance(batch, bool):
        raise MalformedResponse(f"{where}: batch is {batch!r}, not a boolean")
    return (start, project_id, model, bool(batch), _optional_str(result, "service_tier", where), api_key_id)


def _result_counts(result: Json, where: str, kind: str) -> _Counts:
    input_tokens = _count(result, "input_tokens", where, required=True)
    requests = _count(result, "num_model_requests", where, required=True)
    if kind != "completions":  # embeddings: input only, nothing cached (§3)
        return (input_tokens, 0, 0, requests)
    cached = _count(result, "input_cached_tokens", where, required=False)
    output = _count(result, "output_tokens", where, required=True)
    return (input_tokens, cached, output, requests)


def _count(result: Json, key: str, where: str, *, required: bool) -> int:
    """A token or request count: a non-negative integer (the schema's `integer`); 12.0 is read as 12."""
    value = result.get(key)
    if value is None:
        if required:
            raise MalformedResponse(f"{where}: {key} is missing, and the schema requires it")
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON encoders may write integral counts as 12.0; nan and inf are not integers
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedResponse(f"{where}: {key} is {value!r}, not a non-negative integer")
    return value


def _add(left: _Counts, right: _Counts) -> _Counts:
    return (left[0] + right[0], left[1] + right[1], left[2] + right[2], left[3] + right[3])
