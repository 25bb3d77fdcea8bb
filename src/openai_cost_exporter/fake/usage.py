"""The usage endpoints of the fake Admin API: `GET /organization/usage/completions` and `.../embeddings`.

`parse_usage_query` validates a request (400 `Reply` on the first problem, openai-admin-api.md §3 for the
limits per bucket width); `UsageRenderer` writes the page bucket by bucket. Buckets are [start, start + width)
aligned to the width (a start_time inside a bucket gets the whole bucket); a bucket in progress reports usage
up to `now - usage_lag`. Tokens are the spend of the (project, model, direction) line items in the bucket
divided by the model's price, rounded down (fake/prices.py), so usage priced with genai-prices gives back the
billed spend to within one token per row.

Grouped by `api_key_id`, each (project, model) row splits over the project's keys with the shares its costs
split with (fake/keys.py): uncached input, cached input, output tokens and requests each split in integers, the
last key taking the remainder, so the key rows add up to the ungrouped row exactly (a key may get a few tokens
and no request); `api_key_id` is null for usage outside API keys. `api_key_ids` keeps only those keys' shares.

Deliberate simplifications: users, service tiers and batch jobs are not simulated. `user_ids` and the other
`group_by` values are accepted and leave those fields null; `batch=true` (batch jobs only) gives buckets
without results.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass

from openai_cost_exporter.fake.costs import decode_cursor, render_page
from openai_cost_exporter.fake.http import Params, bad_request, int_param, limit_param, many_params, one_param
from openai_cost_exporter.fake.keys import split
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.fake.prices import PRICES
from openai_cost_exporter.fake.traffic import DAY_SECONDS, day_origin, day_second, spent_by

#: bucket_width -> (seconds, default limit, max limit), openai-admin-api.md §3.
WIDTHS = {"1m": (60, 60, 1440), "1h": (3600, 24, 168), "1d": (DAY_SECONDS, 7, 31)}
GROUP_BY = {
    "completions": ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier"),
    "embeddings": ("project_id", "user_id", "api_key_id", "model"),
}
_Counts = list[int]  # input tokens (incl. cached), cached input tokens, output tokens, requests
_Key = tuple[str | None, str | None, str | None]  # (project_id, model, api_key_id) as grouped, None if not
#: Per spender with usage of a kind: (spender index, ((model, price, ((item, direction), ...)), ...)).
_Plan = list[tuple[int, tuple[tuple[str, tuple[int, int, int], tuple[tuple[int, int], ...]], ...]]]


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A validated usage request; `start_time` is the query's own, `page_start` this page's aligned start."""

    kind: str
    start_time: int
    page_start: int
    end_time: int
    width: int
    limit: int
    by_project: bool
    by_model: bool
    project_ids: frozenset[str] | None
    models: frozenset[str] | None
    batch_only: bool
    by_api_key: bool = False
    api_key_ids: frozenset[str | None] | None = None


def parse_usage_query(kind: str, params: Params, now: int) -> UsageQuery:
    """Validate the query string of `GET /organization/usage/{kind}`; 400 `Reply` on the first problem."""
    start = int_param(params, "start_time")
    if start is None:
        raise bad_request("Missing required parameter: 'start_time'.", "start_time")
    end = int_param(params, "end_time")
    if end is not None and end <= start:
        raise bad_request("'end_time' must be later than 'start_time'.", "end_time")
    end = max(now, start) if end is None else end
    width_name = one_param(params, "bucket_width") or "1d"
    if width_name not in WIDTHS:
        raise bad_request("Invalid value for 'bucket_width': expected one of '1m', '1h', '1d'.", "bucket_width")
    width, default_limit, max_limit = WIDTHS[width_name]
    group_by = many_params(params, "group_by")
    for value in group_by:
        if value not in GROUP_BY[kind]:
            raise bad_request(f"Invalid value for 'group_by': {value[:40]!r}.", "group_by")
    return UsageQuery(
        kind=kind,
        start_time=start,
        page_start=_page_start(one_param(params, "page"), start, end, width),
        end_time=end,
        width=width,
        limit=limit_param(params, default_limit, max_limit),
        by_project="project_id" in group_by,
        by_model="model" in group_by,
        project_ids=frozenset(many_params(params, "project_ids")) or None,
        models=frozenset(many_params(params, "models")) or None,
        batch_only=kind == "completions" and _batch_param(params),
        by_api_key="api_key_id" in group_by,
        api_key_ids=frozenset(many_params(params, "api_key_ids")) or None,
    )


def _page_start(cursor: str | None, start: int, end: int, width: int) -> int:
    first = start // width * width
    if cursor is None:
        return first
    page_start = decode_cursor(cursor, start, end)
    if (page_start - first) % width:
        raise bad_request("Invalid 'page' cursor: it does not belong to this query.", "page")
    return page_start


def _batch_param(params: Params) -> bool:
    raw = (one_param(params, "batch") or "false").lower()
    if raw not in ("true", "false"):
        raise bad_request("Invalid value for 'batch': expected a boolean.", "batch")
    return raw == "true"


def usage_bounds(query: UsageQuery) -> tuple[list[tuple[int, int]], int | None]:
    """This page's buckets and the start of the next page, if any."""
    bounds: list[tuple[int, int]] = []
    t = query.page_start
    while t < query.end_time and len(bounds) < query.limit:
        bounds.append((t, t + query.width))
        t += query.width
    return bounds, (t if t < query.end_time else None)


class UsageRenderer:
    """Writes usage pages as JSON text, bucket by bucket (one renderer per request: it caches day amounts)."""

    def __init__(self, org: FakeOrg) -> None:
        self._org = org
        self._days: dict[int, tuple[list[tuple[int, ...]], list[bool]]] = {}
        self._plan: _Plan = []

    def page(self, query: UsageQuery) -> Iterator[str]:
        """The whole page, one piece per bucket."""
        self._plan = self._kind_plan(query)
        bounds, next_start = usage_bounds(query)
        return render_page((self.bucket(query, start, end) for start, end in bounds), next_start, query.start_time)

    def bucket(self, query: UsageQuery, start: int, end: int) -> str:
        rows = "" if query.batch_only else ",".join(self._rows(query, start, end))
        iso = dt.datetime.fromtimestamp(start, dt.UTC).isoformat()
        return (
            f'{{"object":"bucket","start_time":{start},"end_time":{end},"start_time_iso":"{iso}","results":[{rows}]}}'
        )

    def _kind_plan(self, query: UsageQuery) -> _Plan:
        embeddings = query.kind == "embeddings"
        plan: _Plan = []
        for index, (s, groups) in enumerate(zip(self._org.spenders, self._org.usage_groups, strict=True)):
            if query.project_ids is not None and s.project_id not in query.project_ids:
                continue
            mine = tuple(
                (model, PRICES[model].per_million, pairs)
                for model, pairs in groups
                if PRICES[model].embeddings == embeddings and (query.models is None or model in query.models)
            )
            if mine:
                plan.append((index, mine))
        return plan

    def _day(self, o: int) -> tuple[list[tuple[int, ...]], list[bool]]:
        day = self._days.get(o)
        if day is None:
            org, today = self._org, day_second(int(self._org.clock.now().timestamp()))[0]
            amounts = [org.spend.day_amounts(org.spenders[index], o, today) for index, _ in self._plan]
            plain = [not org.spend.is_special(org.spenders[index], o) for index, _ in self._plan]
            day = self._days[o] = (amounts, plain)
        return day

    def _rows(self, query: UsageQuery, start: int, end: int) -> Iterator[str]:
        stop = min(end, self._org.usage_end())
        if stop <= start:
            return iter(())
        o = day_second(start)[0]
        day0 = day_origin(o)
        sums = self._sums(query, o, start - day0, stop - day0)
        return (self._result(query, key, counts) for key, counts in sums.items())

    def _sums(self, query: UsageQuery, o: int, low: int, high: int) -> dict[_Key, _Counts]:
        # The hot loop of a 7-day hourly page over 2,000 projects: locals, few calls per (project, model).
        spend_model, spenders = self._org.spend, self._org.spenders
        amounts, plain = self._day(o)
        keyed = query.by_api_key or query.api_key_ids is not None
        sums: dict[_Key, _Counts] = {}
        for (index, groups), day, simple in zip(self._plan, amounts, plain, strict=True):
            if not day:
                continue
            s = spenders[index]
            cumulative = s.profile.cumulative
            for model, price, pairs in groups:
                spend = [0, 0, 0]
                for item, direction in pairs:
                    n = day[item]
                    if simple:
                        spend[direction] += spent_by(n, cumulative, high) - spent_by(n, cumulative, low)
                    else:
                        spend[direction] += spend_model.spent(s, o, n, high) - spend_model.spent(s, o, n, low)
                counts = _counts(spend, price, PRICES[model].tokens_per_request)
                if counts is None:
                    continue
                key = (s.project_id if query.by_project else None, model if query.by_model else None, None)
                if keyed:
                    self._add_by_key(query, sums, key, counts, s.project_id, o)
                    continue
                total = sums.get(key)
                if total is None:
                    sums[key] = counts
                else:
                    for i in range(4):
                        total[i] += counts[i]
        return sums

    def _add_by_key(
        self, query: UsageQuery, sums: dict[_Key, _Counts], key: _Key, counts: _Counts, project_id: str | None, o: int
    ) -> None:
        """Add one (project, model) row's counts split over the project's keys of day `o`."""
        shares = self._org.keys.shares(project_id, o)
        tokens, cached, output, requests = counts
        parts = (split(n, shares) for n in (tokens - cached, cached, output, requests))
        for slot, uncached_part, cached_part, output_part, requests_part in zip(shares.slots, *parts, strict=True):
            if query.api_key_ids is not None and slot not in query.api_key_ids:
                continue
            if not (uncached_part or cached_part or output_part or requests_part):
                continue
            row = (key[0], key[1], slot if query.by_api_key else None)
            part = [uncached_part + cached_part, cached_part, output_part, requests_part]
            total = sums.get(row)
            if total is None:
                sums[row] = part
            else:
                for i in range(4):
                    total[i] += part[i]

    @staticmethod
    def _result(query: UsageQuery, key: _Key, counts: _Counts) -> str:
        project, model, api_key = (json.dumps(k) for k in key)
        tokens, cached, output, requests = counts
        dims = f'"project_id":{project},"user_id":null,"api_key_id":{api_key},"model":{model}'
        if query.kind == "embeddings":
            return (
                f'{{"object":"organization.usage.embeddings.result","input_tokens":{tokens},'
                f'"num_model_requests":{requests},{dims}}}'
            )
        return (
            f'{{"object":"organization.usage.completions.result","input_tokens":{tokens},'
            f'"output_tokens":{output},"num_model_requests":{requests},"input_cached_tokens":{cached},'
            f'"input_uncached_tokens":{tokens - cached},{dims},"batch":null,"service_tier":null}}'
        )


def _counts(spend: list[int], price: tuple[int, int, int], per_request: int) -> _Counts | None:
    """Like `ModelPrice.counts`, inline for the hot loop; None when nothing was used."""
    uncached, output, cached = (spend[d] * 1_000_000 // price[d] if price[d] and spend[d] > 0 else 0 for d in range(3))
    total = uncached + output + cached
    if not total:
        return None
    return [uncached + cached, cached, output, max(1, total // per_request)]
