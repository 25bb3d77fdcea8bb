"""The costs endpoint of the fake Admin API: its query, page cursors, bucket bounds and the JSON it writes.

`parse_costs_query` validates `GET /organization/costs` (400 `Reply` on the first problem); `CostsRenderer`
streams a page bucket by bucket; `wire_amount` gives `amount.value` the shapes seen live (openai-admin-api.md
§7.1).

Grouped by `api_key_id` (with project_id and/or line_item, or alone) a bucket has one row per (project, key, line
item) as grouped: every cell split over the project's keys (fake/keys.py), so the rows add up to the ungrouped
ones exactly; `api_key_id` is null for spend outside API keys. Like the real API (openai-admin-api.md §9) the
grouping is refused with a 400 for a `start_time` before `KEYS_EPOCH` (2025-12-06). `api_key_ids` keeps only
those keys' shares, whatever the grouping. Without either, pages are what they were before keys existed.
Paging is unchanged: `limit` counts daily buckets, however many rows a bucket has.

Deliberate simplification: a bucket not starting at a UTC midnight reports its whole day.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from openai_cost_exporter.fake.http import Params, bad_request, int_param, limit_param, many_params, one_param
from openai_cost_exporter.fake.keys import KEYS_EPOCH, KeyCell
from openai_cost_exporter.fake.org import NANOS, FakeOrg

#: The 400 for `group_by=api_key_id` with an earlier start_time; like the real one it names the epoch (§9).
KEY_GROUPING_REFUSED = f"Grouping by api_key_id is only supported for start_time >= {KEYS_EPOCH}."
_DAY_SECONDS = 86400
#: The string forms of a non-zero amount, in the order rows rotate through them (§7.1).
_STRING_SHAPES = ("plain", "padded", "exponent")
_Cell = tuple[str | None, str | None, int]
_KeyRow = tuple[str | None, str | None, str | None, int]  # (project_id, api_key_id, line_item, nanos), as grouped


@dataclass(frozen=True, slots=True)
class CostsQuery:
    """A validated costs request: the page starts at `page_start`; `start_time` is the query's own."""

    start_time: int
    page_start: int
    end_time: int
    limit: int
    by_project: bool
    by_line_item: bool
    project_ids: frozenset[str | None] | None
    by_api_key: bool = False
    api_key_ids: frozenset[str | None] | None = None


def parse_costs_query(params: Params, now: int) -> CostsQuery:
    """Validate the query string of `GET /organization/costs`; 400 `Reply` on the first problem."""
    start = int_param(params, "start_time")
    if start is None:
        raise bad_request("Missing required parameter: 'start_time'.", "start_time")
    end = int_param(params, "end_time")
    if end is not None and end <= start:
        raise bad_request("'end_time' must be later than 'start_time'.", "end_time")
    if end is None:  # up to now; a start_time at or after now gives a page without buckets
        end = max(now, start)
    if one_param(params, "bucket_width") not in (None, "1d"):
        raise bad_request("Invalid value for 'bucket_width': only '1d' is supported.", "bucket_width")
    group_by = _group_by(params, start)
    project_ids = many_params(params, "project_ids")
    api_key_ids = many_params(params, "api_key_ids")
    page = one_param(params, "page")
    return CostsQuery(
        start_time=start,
        page_start=decode_cursor(page, start, end) if page else start,
        end_time=end,
        limit=limit_param(params, 7, 180),
        by_project="project_id" in group_by,
        by_line_item="line_item" in group_by,
        project_ids=frozenset(project_ids) if project_ids else None,
        by_api_key="api_key_id" in group_by,
        api_key_ids=frozenset(api_key_ids) if api_key_ids else None,
    )


def _group_by(params: Params, start: int) -> list[str]:
    group_by = many_params(params, "group_by")
    for value in group_by:
        if value not in ("project_id", "line_item", "api_key_id"):
            raise bad_request(f"Invalid value for 'group_by': {value[:40]!r}.", "group_by")
    if "api_key_id" in group_by and start < KEYS_EPOCH:
        raise bad_request(KEY_GROUPING_REFUSED, "group_by")
    return group_by


def encode_cursor(page_start: int, start_time: int) -> str:
    """Opaque to clients; like the spec's example it is two 64-bit timestamps in base64."""
    return "page_" + base64.b64encode(struct.pack(">qq", page_start, start_time)).decode()


def decode_cursor(cursor: str, start_time: int, end_time: int) -> int:
    """The start of the page a cursor points at; 400 if it is foreign to this query."""
    try:
        raw = base64.b64decode(cursor.removeprefix("page_"), validate=True)
        page_start, origin = struct.unpack(">qq", raw)
    except (binascii.Error, struct.error) as exc:
        raise bad_request("Invalid 'page' cursor.", "page") from exc
    if not cursor.startswith("page_") or origin != start_time or not start_time < page_start < end_time:
        raise bad_request("Invalid 'page' cursor: it does not belong to this query.", "page")
    return int(page_start)


def bucket_bounds(query: CostsQuery) -> tuple[list[tuple[int, int]], int | None]:
    """This page's buckets (cut at UTC midnights and at end_time) and the start of the next page, if any."""
    bounds: list[tuple[int, int]] = []
    t = query.page_start
    while t < query.end_time and len(bounds) < query.limit:
        nxt = min((t // _DAY_SECONDS + 1) * _DAY_SECONDS, query.end_time)
        bounds.append((t, nxt))
        t = nxt
    return bounds, (t if t < query.end_time else None)


# ---- rendering -------------------------------------------------------------------------------------


def wire_amount(nanos: int, amount_format: str, row: int) -> str:
    """One `amount.value` as JSON text; string forms rotate through the shapes seen live (§7.1)."""
    sign, (whole, frac) = ("-" if nanos < 0 else ""), divmod(abs(nanos), NANOS)
    plain = f"{sign}{whole}.{frac:09d}"
    if amount_format == "number" or (amount_format == "mixed" and row % 2 == 0):
        return plain
    if nanos == 0:
        return '"0E-6176"'
    shape = _STRING_SHAPES[row % len(_STRING_SHAPES)]
    if shape == "padded":  # 39 significant digits, same value
        return f'"{plain}{"0" * (39 - len(plain.replace("-", "").replace(".", "")))}"'
    if shape == "exponent":
        return f'"{nanos}E-9"'
    return f'"{plain}"'


def _group(cells: list[tuple[str | None, str, int]], query: CostsQuery) -> Iterable[_Cell]:
    if query.by_project and query.by_line_item:
        return cells
    if not query.by_project and not query.by_line_item:
        return [(None, None, sum(n for _, _, n in cells))] if cells else []
    sums: dict[str | None, int] = {}
    for p, li, n in cells:
        key = p if query.by_project else li
        sums[key] = sums.get(key, 0) + n
    if query.by_project:
        return [(p, None, n) for p, n in sums.items()]
    return [(None, li, n) for li, n in sums.items()]


def _group_keys(cells: list[KeyCell], query: CostsQuery) -> Iterable[_KeyRow]:
    """Key rows (project_id, api_key_id, line_item, nanos) kept by `api_key_ids` and summed as grouped."""
    if query.api_key_ids is not None:
        cells = [c for c in cells if c[1] in query.api_key_ids]
    if query.by_project and query.by_line_item and query.by_api_key:
        return cells
    sums: dict[tuple[str | None, str | None, str | None], int] = {}
    for p, k, li, n in cells:
        key = (p if query.by_project else None, k if query.by_api_key else None, li if query.by_line_item else None)
        sums[key] = sums.get(key, 0) + n
    return [(p, k, li, n) for (p, k, li), n in sums.items()]


def render_page(buckets: Iterable[str], next_start: int | None, start_time: int) -> Iterator[str]:
    """A page of buckets (costs or usage), one piece per bucket, with its `has_more` and `next_page` cursor."""
    yield '{"object":"page","data":['
    for i, bucket in enumerate(buckets):
        yield ("," if i else "") + bucket
    cursor = json.dumps(encode_cursor(next_start, start_time) if next_start else None)
    yield f'],"has_more":{json.dumps(next_start is not None)},"next_page":{cursor}}}'


class CostsRenderer:
    """Writes costs pages as JSON text, bucket by bucket, from precomputed fragments (fast for big orgs)."""

    def __init__(self, org: FakeOrg, amount_format: str) -> None:
        self._org = org
        self._format = amount_format
        self._row = 0
        self._organization = json.dumps(org.organization_id)
        self._tails: dict[str | None, str] = {None: f',"api_key_id":null,"organization_id":{self._organization}}}'}
        self._projects = {
            p.id: f'"project_id":{json.dumps(p.id)},"project_name":{json.dumps(p.name)}' for p in org.projects
        }
        self._line_items: dict[str | None, str] = {None: "null"}

    def page(self, query: CostsQuery) -> Iterator[str]:
        """The whole page, one piece per bucket."""
        bounds, next_start = bucket_bounds(query)
        buckets = (self.bucket(query, start, end) for start, end in bounds)
        return render_page(buckets, next_start, query.start_time)

    def bucket(self, query: CostsQuery, start: int, end: int) -> str:
        day = dt.datetime.fromtimestamp(start, dt.UTC)
        include_zero = self._format != "number"
        if query.by_api_key or query.api_key_ids is not None:
            cells = self._org.key_cells(day.date(), query.project_ids, include_zero=include_zero)
            rows = ",".join(self._result(p, li, n, k) for p, k, li, n in _group_keys(cells, query))
        else:
            plain = self._org.cells(day.date(), query.project_ids, include_zero=include_zero)
            rows = ",".join(self._result(p, li, n) for p, li, n in _group(plain, query))
        return (
            f'{{"object":"bucket","start_time":{start},"end_time":{end},'
            f'"start_time_iso":"{day.isoformat()}","results":[{rows}]}}'
        )

    def _result(self, project_id: str | None, line_item: str | None, nanos: int, api_key_id: str | None = None) -> str:
        li = self._line_items.get(line_item)
        if li is None:
            li = self._line_items[line_item] = json.dumps(line_item)
        project = self._projects[project_id] if project_id is not None else '"project_id":null'
        self._row += 1
        if self._format == "number" and nanos >= 0:  # the common case, inline: big pages are hot
            whole, frac = divmod(nanos, NANOS)
            amount = f"{whole}.{frac:09d}"
        else:
            amount = wire_amount(nanos, self._format, self._row)
        return (
            f'{{"object":"organization.costs.result","amount":{{"value":{amount},"currency":"usd"}},'
            f'"line_item":{li},{project}{self._tail(api_key_id)}'
        )

    def _tail(self, api_key_id: str | None) -> str:
        tail = self._tails.get(api_key_id)
        if tail is None:
            tail = self._tails[api_key_id] = (
                f',"api_key_id":{json.dumps(api_key_id)},"organization_id":{self._organization}}}'
            )
        return tail
