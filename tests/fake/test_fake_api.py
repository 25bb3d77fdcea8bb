"""Contract and behaviour tests of the fake OpenAI Admin API, over loopback with httpx.

Responses are validated with openapi-core against tests/contract/openai-admin-openapi.yaml (a verbatim copy of
the shared spec). The spec's `results` oneOf has a discriminator on `object` without a mapping, which a strict
validator resolves to a schema *named* `organization.costs.result`; we add the mapping that the result schemas'
own `object` enums imply, and change nothing else.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS31Validator

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import day_start
from openai_cost_exporter.fake.api import FakeAdminAPI, Faults, mask_key, serve_forever
from openai_cost_exporter.fake.costs import wire_amount
from openai_cost_exporter.fake.org import FakeOrg

KEY = "sk-admin-test-0123456789abcdef"
NOON = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
TODAY = NOON.date()
DAY = dt.timedelta(days=1)
SPEC_PATH = Path(__file__).parents[1] / "contract" / "openai-admin-openapi.yaml"


def _load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    schemas = spec["components"]["schemas"]
    items = schemas["UsageTimeBucket"]["properties"]["results"]["items"]
    mapping = {}
    for ref in items["oneOf"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        mapping[schemas[name]["properties"]["object"]["enum"][0]] = ref["$ref"]
    items["discriminator"]["mapping"] = mapping
    return spec


SPEC = _load_spec()
CONTRACT = OpenAPI.from_dict(copy.deepcopy(SPEC))
ERROR_SCHEMA = OAS31Validator({"$ref": "#/components/schemas/ErrorResponse", "components": SPEC["components"]})


def _spec_request(response: httpx.Response) -> MockRequest:
    """The request as the spec sees it: on api.openai.com, with the SDK's `name[]` keys folded into `name`."""
    url = urlsplit(str(response.request.url))
    args: dict[str, list[str]] = {}
    for name, values in parse_qs(url.query, keep_blank_values=True).items():
        args.setdefault(name.removesuffix("[]"), []).extend(values)
    headers = {"Authorization": response.request.headers.get("Authorization", "")}
    return MockRequest("https://api.openai.com", "get", url.path, args=args, headers=headers)


def validate(response: httpx.Response) -> None:
    """Validate the request and the response against the OpenAPI contract (raises if either breaks it)."""
    request = _spec_request(response)
    CONTRACT.validate_request(request)
    mock = MockResponse(
        response.content,
        status_code=response.status_code,
        content_type=response.headers["Content-Type"],
        headers=dict(response.headers),
    )
    CONTRACT.validate_response(request, mock)


def validate_error(response: httpx.Response) -> dict[str, Any]:
    """Validate an error body against the spec's ErrorResponse (statuses the spec does not list)."""
    body: dict[str, Any] = response.json()
    ERROR_SCHEMA.validate(body)
    return body["error"]  # type: ignore[no-any-return]


def amounts(response: httpx.Response) -> dict[tuple[int, str | None, str | None], Decimal]:
    """(bucket start, project_id, line_item) -> amount, parsed exactly from numbers or strings."""
    out = {}
    page = json.loads(response.content, parse_float=Decimal)
    for bucket in page["data"]:
        for r in bucket["results"]:
            out[(bucket["start_time"], r["project_id"], r["line_item"])] = Decimal(str(r["amount"]["value"]))
    return out


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOON)


@pytest.fixture
def org(clock: FrozenClock) -> FakeOrg:
    return FakeOrg.generate(seed=7, project_count=40, clock=clock)


@pytest.fixture
def api(org: FakeOrg) -> Iterator[FakeAdminAPI]:
    with FakeAdminAPI(org, admin_key=KEY) as fake:
        yield fake


@pytest.fixture
def client(api: FakeAdminAPI) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture
def control(api: FakeAdminAPI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url.removesuffix("/v1"), timeout=30) as c:
        yield c


def costs(client: httpx.Client, days_back: int = 7, **params: Any) -> httpx.Response:
    params.setdefault("start_time", day_start(TODAY - days_back * DAY))
    return client.get("/organization/costs", params=params)


# ---- costs: contract and figures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "group_by",
    [
        {},
        {"group_by": "project_id"},
        {"group_by": "line_item"},
        {"group_by": ["project_id", "line_item"]},
        {"group_by[]": ["project_id", "line_item"]},
        {"group_by": ["project_id", "line_item", "api_key_id"]},
        {"group_by[]": ["project_id", "api_key_id"]},
        {"group_by": "api_key_id"},
    ],
    ids=["none", "project", "line-item", "both-repeated", "both-brackets", "with-api-key", "project-key", "key"],
)
def test_costs_match_the_contract_for_every_grouping(client: httpx.Client, group_by: dict[str, Any]) -> None:
    """Each group_by combination (repeated or bracket keys) gives a response valid against the spec; api_key_id
    is set (or null for spend outside keys) only when grouped by it."""
    response = costs(client, **group_by)
    assert response.status_code == 200
    validate(response)
    page = response.json()
    assert len(page["data"]) == 7 and page["has_more"] is True
    wanted = {g for v in group_by.values() for g in ([v] if isinstance(v, str) else v)}
    results = [r for bucket in page["data"] for r in bucket["results"]]
    for r in results:
        assert (r["line_item"] is not None) == ("line_item" in wanted)
        assert ("project_name" in r) == (r["project_id"] is not None)
        assert r["organization_id"].startswith("org-")
        assert r["amount"]["currency"] == "usd"
    keys = {r["api_key_id"] for r in results}
    assert (keys - {None}) if "api_key_id" in wanted else (keys == {None})


def test_results_follow_the_grouping(client: httpx.Client, org: FakeOrg) -> None:
    """Ungrouped: one org-total row; by project_id: rows per project; by both: rows per (project, line item)."""
    start = day_start(TODAY - 2 * DAY)
    day = TODAY - 2 * DAY
    total = amounts(costs(client, start_time=start, limit=1))
    assert total == {(start, None, None): sum(org.daily_totals(day).values())}
    by_project = amounts(costs(client, start_time=start, limit=1, group_by="project_id"))
    assert by_project == {(start, p, None): v for p, v in org.daily_totals(day).items()}
    by_item = amounts(costs(client, start_time=start, limit=1, group_by="line_item"))
    assert sum(by_item.values()) == sum(org.daily_totals(day).values())
    by_both = amounts(costs(client, start_time=start, limit=1, group_by=["project_id", "line_item"]))
    assert by_both == {(start, p, li): v for (p, li), v in org.line_item_totals(day).items()}


def test_today_is_the_partial_last_bucket_ending_now(client: httpx.Client, org: FakeOrg) -> None:
    """Without end_time the last bucket is today, ending at the clock's now, with today-so-far amounts."""
    page = costs(client, days_back=0, group_by="project_id").json()
    (bucket,) = page["data"]
    assert bucket["start_time"] == day_start(TODAY)
    assert bucket["end_time"] == int(NOON.timestamp())
    assert bucket["start_time_iso"] == "2026-11-28T00:00:00+00:00"
    got = {r["project_id"]: Decimal(str(r["amount"]["value"])) for r in bucket["results"]}
    assert got == org.daily_totals(TODAY)
    assert page["has_more"] is False and page["next_page"] is None


def test_a_start_time_at_or_after_now_gives_no_buckets(client: httpx.Client, clock: FrozenClock) -> None:
    """Without end_time, a start_time at the clock's now (e.g. exactly midnight) gives an empty page, not 400."""
    clock.current = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    response = client.get("/organization/costs", params={"start_time": int(clock.current.timestamp())})
    validate(response)
    assert response.json() == {"object": "page", "data": [], "has_more": False, "next_page": None}


def test_buckets_are_utc_days_and_an_unaligned_start_is_cut_at_midnight(client: httpx.Client) -> None:
    """Buckets run midnight to midnight; an unaligned start_time opens a short first bucket."""
    start = day_start(TODAY - 3 * DAY) + 5 * 3600
    page = client.get("/organization/costs", params={"start_time": start, "end_time": day_start(TODAY)}).json()
    bounds = [(b["start_time"], b["end_time"]) for b in page["data"]]
    assert bounds == [
        (start, day_start(TODAY - 2 * DAY)),
        (day_start(TODAY - 2 * DAY), day_start(TODAY - DAY)),
        (day_start(TODAY - DAY), day_start(TODAY)),
    ]


def test_empty_days_are_buckets_with_no_results(client: httpx.Client, org: FakeOrg) -> None:
    """Days before the history window and days after today are present as buckets with results: []."""
    old = day_start(TODAY - 420 * DAY)
    page = client.get("/organization/costs", params={"start_time": old, "end_time": old + 3 * 86400}).json()
    assert [b["results"] for b in page["data"]] == [[], [], []]
    future = {"start_time": day_start(TODAY + DAY), "end_time": day_start(TODAY + 3 * DAY)}
    assert [b["results"] for b in client.get("/organization/costs", params=future).json()["data"]] == [[], []]


def test_project_ids_filter_keeps_only_those_projects(client: httpx.Client, org: FakeOrg) -> None:
    """project_ids (repeated or bracketed) limits results to those projects; unattributed rows go away."""
    wanted = [org.projects[2].id, org.projects[5].id]
    for key in ("project_ids", "project_ids[]"):
        response = costs(client, days_back=30, limit=31, group_by="project_id", **{key: wanted})
        validate(response)
        assert {pid for _, pid, _ in amounts(response)} == set(wanted)


def test_archived_projects_spend_shows_in_costs(client: httpx.Client, org: FakeOrg) -> None:
    """Costs of a project that was archived later are still served for the days it spent."""
    archived = [p for p in org.projects if p.archived and p.archived_at]
    spent = [
        p
        for p in archived
        if p.archived_at and org.daily_total(dt.datetime.fromtimestamp(p.archived_at, dt.UTC).date() - DAY, p.id)
    ]
    assert spent
    p = spent[0]
    assert p.archived_at is not None
    day = dt.datetime.fromtimestamp(p.archived_at, dt.UTC).date() - DAY
    response = client.get(
        "/organization/costs",
        params={"start_time": day_start(day), "limit": 1, "group_by": "project_id", "project_ids": p.id},
    )
    assert amounts(response) == {(day_start(day), p.id, None): org.daily_total(day, p.id)}


def test_a_mutated_response_fails_validation(client: httpx.Client) -> None:
    """The contract check is not vacuous: a string amount, a missing has_more or a bad object type fail it."""
    response = costs(client, group_by="project_id")
    validate(response)
    good = response.json()
    mutations: list[Callable[[dict[str, Any]], object]] = [
        lambda p: p["data"][0]["results"][0]["amount"].__setitem__("value", "1.5"),
        lambda p: p.pop("has_more"),
        lambda p: p["data"][0].__setitem__("object", "bukket"),
        lambda p: p["data"][0].__setitem__("start_time", "yesterday"),
    ]
    for mutate in mutations:
        page = copy.deepcopy(good)
        mutate(page)
        broken = httpx.Response(200, json=page, request=response.request)
        with pytest.raises(Exception, match=r"InvalidData|not valid|is not"):
            validate(broken)


def test_string_amounts_break_the_spec_on_purpose(api: FakeAdminAPI, client: httpx.Client) -> None:
    """amount_format=string is what live OpenAI sends and what the spec forbids: validation must fail."""
    api.faults.amount_format = "string"
    with pytest.raises(Exception, match="not of type 'number'"):
        validate(costs(client, group_by="project_id"))


@pytest.mark.parametrize("amount_format", ["string", "mixed"])
def test_string_and_mixed_amounts_carry_the_same_money(
    api: FakeAdminAPI, client: httpx.Client, org: FakeOrg, amount_format: str
) -> None:
    """String/mixed amounts (incl. 0E-6176 and 39-digit forms) sum exactly to the truth."""
    api.faults.amount_format = amount_format
    response = costs(client, days_back=20, limit=20, group_by=["project_id", "line_item"])
    raw = [
        r["amount"]["value"] for b in json.loads(response.content, parse_float=Decimal)["data"] for r in b["results"]
    ]
    strings = [v for v in raw if isinstance(v, str)]
    assert "0E-6176" in strings
    assert any(len(v.replace(".", "").lstrip("0")) >= 38 for v in strings)
    assert any("E-9" in v for v in strings)
    assert (amount_format == "mixed") == any(isinstance(v, Decimal) for v in raw)
    got: dict[tuple[str | None, str | None], Decimal] = {}
    for (start, pid, li), value in amounts(response).items():
        if value:
            day = dt.datetime.fromtimestamp(start, dt.UTC).date()
            assert li is not None and org.line_item_totals(day)[(pid, li)] == value
            got[(pid, li)] = value
    assert got


@pytest.mark.parametrize(
    ("nanos", "amount_format", "row", "expected"),
    [
        (1_500_000_000, "number", 1, "1.500000000"),
        (-1_500_000_000, "number", 1, "-1.500000000"),
        (0, "string", 1, '"0E-6176"'),
        (1_500_000_000, "string", 3, '"1.500000000"'),
        (1_500_000_000, "string", 1, '"1.50000000000000000000000000000000000000"'),
        (1_500_000_000, "string", 2, '"1500000000E-9"'),
        (1_500_000_000, "mixed", 2, "1.500000000"),
    ],
)
def test_wire_amount_forms(nanos: int, amount_format: str, row: int, expected: str) -> None:
    """Every amount shape is the same value: plain, zero as 0E-6176, 39 digits, exponent form."""
    assert wire_amount(nanos, amount_format, row) == expected
    assert Decimal(json.loads(expected) if expected.startswith('"') else expected) == Decimal(nanos).scaleb(-9)


# ---- costs: pagination and validation -------------------------------------------------------------------


def test_costs_pagination_walks_every_day_once(api: FakeAdminAPI, client: httpx.Client) -> None:
    """Following next_page over 400 days yields each UTC day exactly once, and no page is asked twice."""
    start = day_start(TODAY - 399 * DAY)
    params: dict[str, Any] = {"start_time": start, "limit": 30}
    starts: list[int] = []
    pages = 0
    while True:
        response = client.get("/organization/costs", params=params)
        if not starts:
            validate(response)
        page = response.json()
        starts += [b["start_time"] for b in page["data"]]
        pages += 1
        if not page["has_more"]:
            break
        params["page"] = page["next_page"]
    assert starts == [start + n * 86400 for n in range(400)]
    assert pages == 14
    queries = [q for path, q in api.request_log if path == "/v1/organization/costs"]
    assert len(queries) == len(set(queries)) == 14


@pytest.mark.parametrize(("limit", "buckets"), [(None, 7), (1, 1), (180, 180)])
def test_costs_limit_counts_buckets(client: httpx.Client, limit: int | None, buckets: int) -> None:
    """limit counts buckets: default 7, 1 and the maximum 180 are honoured."""
    params = {} if limit is None else {"limit": limit}
    response = costs(client, days_back=300, **params)
    validate(response)
    assert len(response.json()["data"]) == buckets


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 181}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "seven"}, "limit"),
        ({"start_time": None}, "start_time"),
        ({"start_time": "1.5"}, "start_time"),
        ({"end_time": 10}, "end_time"),
        ({"bucket_width": "1h"}, "bucket_width"),
        ({"group_by": "model"}, "group_by"),
        ({"group_by": "project_id,line_item"}, "group_by"),
        ({"group_by": "api_key_id", "start_time": 1764979199}, "group_by"),
        ({"page": "page_%%%"}, "page"),
        ({"page": "not-a-cursor"}, "page"),
        ({"page": "page_" + base64.b64encode(struct.pack(">qq", 5, 1)).decode()}, "page"),
    ],
)
def test_costs_validation_errors_are_400(client: httpx.Client, params: dict[str, Any], param: str) -> None:
    """Bad parameters get 400 with the error envelope naming the parameter."""
    query = {"start_time": day_start(TODAY - 7 * DAY), **params}
    response = client.get("/organization/costs", params={k: v for k, v in query.items() if v is not None})
    assert response.status_code == 400
    error = validate_error(response)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_a_cursor_from_another_query_is_refused(client: httpx.Client) -> None:
    """A next_page cursor is bound to the start_time of the query that produced it."""
    cursor = costs(client, days_back=30).json()["next_page"]
    assert cursor and cursor.startswith("page_")
    response = costs(client, days_back=29, page=cursor)
    assert response.status_code == 400 and validate_error(response)["param"] == "page"


# ---- usage: contract, paging and validation ---------------------------------------------------------------


def usage(client: httpx.Client, kind: str = "completions", **params: Any) -> httpx.Response:
    params.setdefault("start_time", day_start(TODAY - 2 * DAY))
    return client.get(f"/organization/usage/{kind}", params=params)


@pytest.mark.parametrize("kind", ["completions", "embeddings"])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"bucket_width": "1d", "group_by": ["project_id", "model"]},
        {"bucket_width": "1h", "group_by[]": ["project_id"], "start_time": day_start(TODAY)},
        {"bucket_width": "1m", "group_by": "model", "start_time": int(NOON.timestamp()) - 3600},
        {"bucket_width": "1h", "group_by": ["project_id", "api_key_id", "user_id"], "limit": 168},
    ],
    ids=["defaults", "1d-both", "1h-project-brackets", "1m-model", "1h-other-groups"],
)
def test_usage_pages_match_the_contract(client: httpx.Client, kind: str, params: dict[str, Any]) -> None:
    """Usage pages of every bucket width and grouping validate against the spec and carry usage rows, with
    api_key_id set only when grouped by it."""
    response = usage(client, kind, **params)
    assert response.status_code == 200, response.text
    validate(response)
    page = response.json()
    results = [r for b in page["data"] for r in b["results"]]
    assert results and all(r["object"] == f"organization.usage.{kind}.result" for r in results)
    wanted = {g for k, v in params.items() if k.startswith("group_by") for g in ([v] if isinstance(v, str) else v)}
    if "project_id" in wanted:
        assert any(r["project_id"] is not None for r in results)
    for r in results:
        assert "project_id" in wanted or r["project_id"] is None
        assert (r["model"] is not None) == ("model" in wanted)
        assert r["input_tokens"] >= 0 and r["num_model_requests"] >= 0
        if "api_key_id" not in wanted:  # split over keys, a row may get a few tokens and no request
            assert r["input_tokens"] > 0 and r["num_model_requests"] > 0
        assert kind == "embeddings" or r["input_cached_tokens"] <= r["input_tokens"]
    keys = {r["api_key_id"] for r in results}
    assert (keys - {None}) if "api_key_id" in wanted else (keys == {None})


def test_a_mutated_usage_page_fails_validation(client: httpx.Client) -> None:
    """The usage contract check is not vacuous: a missing output_tokens or a float token count fail it."""
    response = usage(client, group_by=["project_id", "model"])
    validate(response)
    good = response.json()
    mutations: list[Callable[[dict[str, Any]], object]] = [
        lambda p: p["data"][0]["results"][0].pop("output_tokens"),
        lambda p: p["data"][0]["results"][0].__setitem__("input_tokens", 1.5),
    ]
    for mutate in mutations:
        page = copy.deepcopy(good)
        mutate(page)
        with pytest.raises(Exception, match=r"InvalidData|not valid|is not"):
            validate(httpx.Response(200, json=page, request=response.request))


@pytest.mark.parametrize(("width", "default", "maximum"), [("1d", 7, 31), ("1h", 24, 168), ("1m", 60, 1440)])
def test_usage_limit_defaults_and_maxima_per_bucket_width(
    client: httpx.Client, width: str, default: int, maximum: int
) -> None:
    """Each bucket width has its own default and maximum limit (§3); one over the maximum is a 400."""
    start = day_start(TODAY - 40 * DAY)
    end = int(NOON.timestamp())
    assert len(usage(client, start_time=start, end_time=end, bucket_width=width).json()["data"]) == default
    full = usage(client, start_time=start, end_time=end, bucket_width=width, limit=maximum)
    validate(full)
    assert len(full.json()["data"]) == maximum
    over = usage(client, start_time=start, bucket_width=width, limit=maximum + 1)
    assert over.status_code == 400 and validate_error(over)["param"] == "limit"


@pytest.mark.parametrize(
    ("kind", "params", "param"),
    [
        ("completions", {"bucket_width": "2h"}, "bucket_width"),
        ("completions", {"bucket_width": "1w"}, "bucket_width"),
        ("completions", {"limit": 0}, "limit"),
        ("completions", {"start_time": None}, "start_time"),
        ("completions", {"end_time": 10}, "end_time"),
        ("completions", {"group_by": "line_item"}, "group_by"),
        ("completions", {"batch": "maybe"}, "batch"),
        ("embeddings", {"group_by": "batch"}, "group_by"),
        ("embeddings", {"limit": 32}, "limit"),
        ("completions", {"page": "not-a-cursor"}, "page"),
    ],
)
def test_usage_validation_errors_are_400(client: httpx.Client, kind: str, params: dict[str, Any], param: str) -> None:
    """Bad usage parameters get 400 with the error envelope naming the parameter."""
    query = {"start_time": day_start(TODAY - 7 * DAY), **params}
    response = client.get(f"/organization/usage/{kind}", params={k: v for k, v in query.items() if v is not None})
    assert response.status_code == 400
    assert validate_error(response)["param"] == param


def test_usage_pagination_walks_every_hour_once(client: httpx.Client) -> None:
    """Seven days of 1h buckets at the default limit come in 7 pages of aligned hours, each hour once."""
    start = day_start(TODAY - 7 * DAY) + 1800  # inside an hour: the first bucket is that whole hour
    params: dict[str, Any] = {"start_time": start, "end_time": day_start(TODAY), "bucket_width": "1h"}
    starts: list[int] = []
    pages = 0
    while True:
        page = usage(client, **params).json()
        starts += [b["start_time"] for b in page["data"]]
        assert all(b["end_time"] == b["start_time"] + 3600 for b in page["data"])
        pages += 1
        if not page["has_more"]:
            assert page["next_page"] is None
            break
        params["page"] = page["next_page"]
    assert starts == [start - 1800 + n * 3600 for n in range(7 * 24)]
    assert pages == 7


# ---- projects ---------------------------------------------------------------------------------------------


def walk_projects(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every project, page by page through `after`, validating the first page (the rest: same code)."""
    seen: list[dict[str, Any]] = []
    while True:
        response = client.get("/organization/projects", params=params)
        if not seen:
            validate(response)
        page = response.json()
        seen += page["data"]
        if page["data"]:
            assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            return seen
        params["after"] = page["last_id"]


@pytest.mark.parametrize("include_archived", [False, True])
@pytest.mark.parametrize("limit", [1, 7, 100])
def test_projects_pagination_walks_every_project_once(
    client: httpx.Client, org: FakeOrg, include_archived: bool, limit: int
) -> None:
    """Paging with `after` lists each project exactly once; archived ones only with include_archived."""
    params = {"limit": limit, "include_archived": str(include_archived).lower()}
    ids = [p["id"] for p in walk_projects(client, **params)]
    expected = {p.id for p in org.projects if include_archived or not p.archived}
    assert len(ids) == len(set(ids)) and set(ids) == expected


def test_projects_defaults_are_20_and_no_archived(client: httpx.Client, org: FakeOrg) -> None:
    """Without parameters: 20 projects, none archived, has_more true for a 40-project org."""
    response = client.get("/organization/projects")
    validate(response)
    page = response.json()
    assert len(page["data"]) == 20 and page["has_more"] is True
    assert all(p["status"] == "active" and p["archived_at"] is None for p in page["data"])


def test_projects_carry_awkward_names_and_archive_fields(client: httpx.Client, org: FakeOrg) -> None:
    """Names round-trip exactly (quotes, newline, null); archived projects have status and archived_at."""
    listed = {p["id"]: p for p in walk_projects(client, limit=100, include_archived="true")}
    for p in org.projects:
        assert listed[p.id]["name"] == p.name
        assert listed[p.id]["archived_at"] == p.archived_at and listed[p.id]["status"] == p.status
    assert None in {p["name"] for p in listed.values()}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"after": "proj_nope"}, "after"),
        ({"include_archived": "maybe"}, "include_archived"),
    ],
)
def test_projects_validation_errors_are_400(client: httpx.Client, params: dict[str, Any], param: str) -> None:
    """Bad project-list parameters get 400 with the error envelope."""
    response = client.get("/organization/projects", params=params)
    assert response.status_code == 400 and validate_error(response)["param"] == param


# ---- API keys and hard spend limits -----------------------------------------------------------------------


def api_keys(client: httpx.Client, project_id: str, **params: Any) -> httpx.Response:
    return client.get(f"/organization/projects/{project_id}/api_keys", params=params)


def test_api_key_pages_match_the_contract(client: httpx.Client, org: FakeOrg) -> None:
    """Every page of the many-keys project's listing, at the default and the largest limit, and a small project's
    whole listing validate against ProjectApiKeyListResponse; both owner types appear."""
    pid = org.many_keys_project_id
    assert pid is not None
    small = next(p.id for p in org.projects if p.id != pid and org.api_keys(p.id))
    owners = set()
    walks: list[tuple[str, dict[str, Any]]] = [
        (pid, {}),
        (pid, {"limit": 100}),
        (small, {"owner_project_access": "any"}),
    ]
    for project_id, first in walks:
        params = dict(first)
        while True:
            response = api_keys(client, project_id, **params)
            assert response.status_code == 200, response.text
            validate(response)
            page = response.json()
            owners |= {k["owner"]["type"] for k in page["data"]}
            if not page["has_more"]:
                break
            params["after"] = page["last_id"]
    assert owners == {"user", "service_account"}


def test_a_mutated_api_key_page_fails_validation(client: httpx.Client, org: FakeOrg) -> None:
    """The key listing's contract check is not vacuous: a key without owner_project_access, or a string
    created_at, fails it."""
    assert org.many_keys_project_id is not None
    response = api_keys(client, org.many_keys_project_id, limit=3)
    validate(response)
    mutations: list[Callable[[dict[str, Any]], object]] = [
        lambda p: p["data"][0].pop("owner_project_access"),
        lambda p: p["data"][1].__setitem__("created_at", "yesterday"),
    ]
    for mutate in mutations:
        page = copy.deepcopy(response.json())
        mutate(page)
        with pytest.raises(Exception, match=r"InvalidData|not valid|is not"):
            validate(httpx.Response(200, json=page, request=response.request))


def test_spend_limits_match_the_contract(client: httpx.Client, org: FakeOrg) -> None:
    """The organization's and every limited project's hard spend limit validate against their resources."""
    response = client.get("/organization/spend_limit")
    validate(response)
    assert response.json()["object"] == "organization.spend_limit"
    limited = {org.near_limit_project_id, org.limit_reached_project_id, *org.far_limit_project_ids}
    assert None not in limited and len(limited) == 4
    for pid in limited:
        response = client.get(f"/organization/projects/{pid}/spend_limit")
        validate(response)
        assert response.json()["object"] == "project.spend_limit"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"after": "key_nope"}, "after"),
        ({"owner_project_access": "sometimes"}, "owner_project_access"),
    ],
)
def test_api_key_validation_errors_are_400(
    client: httpx.Client, org: FakeOrg, params: dict[str, Any], param: str
) -> None:
    """Bad key-list parameters get 400 with the error envelope naming the parameter (limit is not clamped)."""
    assert org.many_keys_project_id is not None
    response = api_keys(client, org.many_keys_project_id, **params)
    assert response.status_code == 400 and validate_error(response)["param"] == param


@pytest.mark.parametrize("resource", ["api_keys", "spend_limit"])
def test_an_unknown_project_is_404(client: httpx.Client, resource: str) -> None:
    """Keys and spend limit of a project the organization does not have: 404 with the error envelope."""
    response = client.get(f"/organization/projects/proj_nope/{resource}")
    assert response.status_code == 404 and validate_error(response)["param"] == "project_id"


def test_a_project_without_a_limit_is_404_or_an_empty_object(
    api: FakeAdminAPI, client: httpx.Client, org: FakeOrg
) -> None:
    """No hard limit: 404 with the error envelope, or `200 {}` (not a valid resource) with spend_limit_empty."""
    pid = next(p.id for p in org.projects if org.spend_limit(p.id) is None)
    response = client.get(f"/organization/projects/{pid}/spend_limit")
    assert response.status_code == 404 and "spend limit" in validate_error(response)["message"]
    api.faults.spend_limit_empty = True
    response = client.get(f"/organization/projects/{pid}/spend_limit")
    assert response.status_code == 200 and response.json() == {}
    with pytest.raises(Exception, match=r"InvalidData|not valid|is not|required"):
        validate(response)


# ---- auth and faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer sk-admin-wrong-key-0123456789", "Basic abc", "Bearer", "Bearer short"]
)
@pytest.mark.parametrize("path", ["/organization/costs", "/organization/projects", "/organization/spend_limit"])
def test_bad_or_missing_key_is_401_and_masked(api: FakeAdminAPI, authorization: str | None, path: str) -> None:
    """Missing, wrong or non-bearer keys get 401 invalid_api_key; the message never holds the whole key."""
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=api.base_url, headers=headers) as anonymous:
        response = anonymous.get(path, params={"start_time": day_start(TODAY)})
    assert response.status_code == 401
    error = validate_error(response)
    assert error["code"] == "invalid_api_key"
    presented = (authorization or "").partition(" ")[2]
    assert KEY not in response.text and (not presented.strip() or presented not in response.text)


@pytest.mark.parametrize(
    ("key", "shown"), [("sk-admin-0123456789abcdefXYZ", "sk-adm***...fXYZ"), ("short", "***"), ("", "***")]
)
def test_mask_key(key: str, shown: str) -> None:
    """A key of 20+ characters shows its first 6 and last 4; shorter keys show nothing."""
    assert mask_key(key) == shown


def test_rate_limit_fault_is_429_with_retry_after_then_clears(api: FakeAdminAPI, client: httpx.Client) -> None:
    """rate_limit_next=2: two 429s valid against the spec's TooManyRequests with Retry-After 1, then 200."""
    api.faults.rate_limit_next = 2
    for _ in range(2):
        response = costs(client)
        assert response.status_code == 429 and response.headers["Retry-After"] == "1"
        validate(response)
        validate_error(response)
    assert costs(client).status_code == 200
    assert api.faults.rate_limit_next == 0


def test_server_error_fault_cycles_500_502_503(api: FakeAdminAPI, client: httpx.Client) -> None:
    """server_error_next=3 gives 500 (JSON), 502 (an HTML proxy page), 503 (JSON), then 200."""
    api.faults.server_error_next = 3
    first, second, third = (client.get("/organization/projects") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (500, 502, 503)
    validate_error(first)
    validate_error(third)
    assert second.headers["Content-Type"] == "text/html" and "Bad Gateway" in second.text
    assert client.get("/organization/projects").status_code == 200


def test_not_found_fault_is_a_404_outage(api: FakeAdminAPI, client: httpx.Client) -> None:
    """not_found_next=1 answers one 404 with the error envelope, then serves again."""
    api.faults.not_found_next = 1
    response = costs(client)
    assert response.status_code == 404 and "Invalid URL" in validate_error(response)["message"]
    assert costs(client).status_code == 200


@pytest.mark.parametrize("path", ["/organization/costs", "/organization/projects"])
def test_truncate_fault_sends_half_a_json_body(api: FakeAdminAPI, client: httpx.Client, path: str) -> None:
    """truncate_next=1: a 200 whose Content-Length matches a body cut in half, which is not JSON."""
    api.faults.truncate_next = 1
    response = client.get(path, params={"start_time": day_start(TODAY - 7 * DAY)})
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content) > 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert client.get(path, params={"start_time": day_start(TODAY - 7 * DAY)}).json()


def test_forbidden_fault_names_the_missing_scope(api: FakeAdminAPI, client: httpx.Client) -> None:
    """forbidden=True answers 403 whose message names api.usage.read, until switched off."""
    api.faults.forbidden = True
    response = costs(client)
    assert response.status_code == 403 and "Missing scopes: api.usage.read" in validate_error(response)["message"]
    api.faults.forbidden = False
    assert costs(client).status_code == 200


def test_error_as_string_fault(api: FakeAdminAPI, client: httpx.Client) -> None:
    """error_as_string=True sends {"error": "..."} with a bare string, which the spec's schema rejects."""
    api.faults.error_as_string = True
    api.faults.forbidden = True
    response = costs(client)
    assert response.status_code == 403
    assert isinstance(response.json()["error"], str) and "api.usage.read" in response.json()["error"]
    with pytest.raises(Exception, match="is not of type 'object'"):
        validate_error(response)


def test_latency_fault_delays_api_responses(api: FakeAdminAPI, client: httpx.Client) -> None:
    """latency_seconds is added to every API response."""
    api.faults.latency_seconds = 0.2
    started = time.perf_counter()
    assert client.get("/organization/projects").status_code == 200
    assert time.perf_counter() - started >= 0.2


@pytest.mark.parametrize(
    "changes",
    [
        {"nope": 1},
        {"rate_limit_next": "2"},
        {"rate_limit_next": -1},
        {"forbidden": 1},
        {"amount_format": "float"},
        {"latency_seconds": -0.5},
    ],
)
def test_faults_update_rejects_bad_values_and_changes_nothing(changes: dict[str, object]) -> None:
    """Faults.update refuses unknown fields, wrong types, negatives and unknown formats, all or nothing."""
    faults = Faults()
    with pytest.raises(ValueError, match=r"fault|amount_format"):
        faults.update({"truncate_next": 3, **changes})
    assert faults == Faults()


def test_faults_update_accepts_an_int_latency() -> None:
    """An integer latency (as JSON may send it) is taken as seconds."""
    faults = Faults()
    faults.update({"latency_seconds": 1, "amount_format": "mixed"})
    assert faults.latency_seconds == 1.0 and faults.amount_format == "mixed"


def test_unknown_paths_and_methods_are_404(client: httpx.Client) -> None:
    """Unknown API paths and POSTs to the read endpoints get 404 'Invalid URL' like the real API."""
    for response in (client.get("/organization/usage/costs"), client.post("/organization/costs")):
        assert response.status_code == 404 and "Invalid URL" in validate_error(response)["message"]


# ---- control endpoints and bookkeeping ------------------------------------------------------------------


def test_control_faults_endpoint(api: FakeAdminAPI, control: httpx.Client, client: httpx.Client) -> None:
    """POST /_fake/faults changes the live faults (any subset); GET returns them; a bad body is 400."""
    response = control.post("/_fake/faults", json={"rate_limit_next": 1, "amount_format": "mixed"})
    assert response.status_code == 200 and response.json()["rate_limit_next"] == 1
    assert api.faults.amount_format == "mixed"
    assert costs(client).status_code == 429
    assert control.get("/_fake/faults").json()["rate_limit_next"] == 0
    for bad in (b"[1]", b"{not json", b'{"nope": 1}'):
        assert control.post("/_fake/faults", content=bad).status_code == 400


def test_control_requests_and_reset(api: FakeAdminAPI, control: httpx.Client, client: httpx.Client) -> None:
    """/_fake/requests counts API requests by path (not control ones); /_fake/reset clears log and faults."""
    costs(client)
    costs(client, group_by="project_id")
    client.get("/organization/projects")
    api.faults.forbidden = True
    body = control.get("/_fake/requests").json()
    assert body["counts"] == {"/v1/organization/costs": 2, "/v1/organization/projects": 1}
    assert body["log"][1][0] == "/v1/organization/costs" and "group_by=project_id" in body["log"][1][1]
    assert api.request_counts() == body["counts"]
    assert control.post("/_fake/reset").json() == json.loads(json.dumps(Faults().__dict__))
    assert api.request_log == [] and api.faults == Faults()


def test_control_spend_and_totals(control: httpx.Client, client: httpx.Client, org: FakeOrg) -> None:
    """POST /_fake/spend sets a cell that costs then serves; /_fake/totals reports truth, null as "null"."""
    day = TODAY - 2 * DAY
    pid = org.projects[3].id
    item = org.project(pid).line_items[0]
    payload = {"day": day.isoformat(), "project_id": pid, "line_item": item, "amount": "12.5"}
    assert control.post("/_fake/spend", json=payload).status_code == 200
    response = costs(client, days_back=2, limit=1, group_by=["project_id", "line_item"])
    assert amounts(response)[(day_start(day), pid, item)] == Decimal("12.5")
    control.post("/_fake/spend", json={**payload, "project_id": None, "line_item": "misc", "amount": 1})
    totals = control.get("/_fake/totals", params={"day": day.isoformat()}).json()
    assert totals["day"] == day.isoformat()
    expected = {(p or "null"): str(v) for p, v in org.daily_totals(day).items()}
    assert totals["totals"] == expected and "null" in expected


def test_control_scale_today(control: httpx.Client, org: FakeOrg) -> None:
    """POST /_fake/scale_today multiplies a project's today."""
    pid = max(org.daily_totals(TODAY), key=lambda p: org.daily_totals(TODAY)[p] if p else 0)
    assert pid is not None
    before = org.daily_total(TODAY, pid)
    assert control.post("/_fake/scale_today", json={"project_id": pid, "factor": "3"}).status_code == 200
    assert abs(org.daily_total(TODAY, pid) - 3 * before) < Decimal("0.00000001")


def test_control_runaway(control: httpx.Client, org: FakeOrg) -> None:
    """POST /_fake/runaway multiplies a project's spend rate since minutes_ago; stop ends it."""
    hour = NOON - dt.timedelta(hours=1)
    pid = max((p.id for p in org.projects), key=lambda p: org.spend_between(p, hour, NOON))
    before = org.spend_between(pid, hour, NOON)
    assert before > 1
    body = {"project_id": pid, "factor": "10", "minutes_ago": 60}
    assert control.post("/_fake/runaway", json=body).status_code == 200
    assert abs(org.spend_between(pid, hour, NOON) - 10 * before) < Decimal("0.000001")
    assert control.post("/_fake/runaway", json={"project_id": pid, "stop": True}).status_code == 200
    assert abs(org.spend_between(pid, hour, NOON) - 10 * before) < Decimal("0.000001")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/_fake/runaway", {"project_id": "proj_x", "factor": "2", "minutes_ago": 5}),
        ("POST", "/_fake/runaway", {"project_id": None, "factor": "-2", "minutes_ago": 5}),
        ("POST", "/_fake/runaway", {"project_id": None, "factor": "2", "minutes_ago": "soon"}),
        ("POST", "/_fake/spend", {"day": "yesterday", "project_id": None, "line_item": "x", "amount": "1"}),
        ("POST", "/_fake/spend", {"day": "2026-11-01", "project_id": "proj_x", "line_item": "x", "amount": "1"}),
        ("POST", "/_fake/spend", {"day": "2026-11-01", "project_id": None, "line_item": "x", "amount": "abc"}),
        ("POST", "/_fake/scale_today", {"factor": "2"}),
        ("POST", "/_fake/spend_limit", {"project_id": "proj_x", "threshold_cents": 100}),
        ("POST", "/_fake/spend_limit", {"project_id": None, "threshold_cents": "100"}),
        ("POST", "/_fake/spend_limit", {"project_id": None, "threshold_cents": -1}),
        ("POST", "/_fake/spend_limit", {"project_id": None, "threshold_cents": 100, "status": "maybe"}),
        ("POST", "/_fake/spend_limit", {"project_id": None}),
        ("GET", "/_fake/totals", None),
        ("GET", "/_fake/nothing", None),
    ],
)
def test_control_errors(control: httpx.Client, method: str, path: str, body: object) -> None:
    """Bad control requests get a 4xx JSON error rather than a dropped connection."""
    response = control.request(method, path, json=body)
    assert response.status_code in (400, 404) and "error" in response.json()


# ---- lifecycle ---------------------------------------------------------------------------------------------


def test_start_twice_returns_the_same_server_and_repr_hides_the_key(org: FakeOrg) -> None:
    """start() is idempotent; repr never shows the admin key; stop() twice is harmless."""
    api = FakeAdminAPI(org, admin_key=KEY)
    url = api.start()
    try:
        assert api.start() == url and url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert KEY not in repr(api)
    finally:
        api.stop()
        api.stop()


def test_base_url_before_start_and_after_stop_is_an_error(org: FakeOrg) -> None:
    """base_url names no address while nothing listens: before start() and after stop()."""
    api = FakeAdminAPI(org, admin_key=KEY)
    with pytest.raises(RuntimeError, match="not started"):
        _ = api.base_url
    api.start()
    api.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = api.base_url


def test_serve_forever_until_stopped(org: FakeOrg) -> None:
    """serve_forever reports its URL, serves, and returns once the stop event is set."""
    stop = threading.Event()
    ready: list[str] = []
    got_url = threading.Event()

    def on_ready(url: str) -> None:
        ready.append(url)
        got_url.set()

    kwargs = {"host": "127.0.0.1", "port": 0, "org": org, "admin_key": KEY, "faults": None}
    thread = threading.Thread(target=serve_forever, kwargs={**kwargs, "stop": stop, "on_ready": on_ready})
    thread.start()
    try:
        assert got_url.wait(10)
        response = httpx.get(f"{ready[0]}/organization/projects", headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 200
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_a_big_page_is_fast(clock: FrozenClock) -> None:
    """180 days x 2,000 projects grouped by project_id is served within a few seconds, streamed."""
    org = FakeOrg.generate(seed=1, project_count=2000, clock=clock)
    with FakeAdminAPI(org, admin_key=KEY) as api, httpx.Client(timeout=60) as c:
        started = time.perf_counter()
        params: dict[str, Any] = {"start_time": day_start(TODAY - 179 * DAY), "limit": 180, "group_by": "project_id"}
        with c.stream(
            "GET", f"{api.base_url}/organization/costs", params=params, headers={"Authorization": f"Bearer {KEY}"}
        ) as response:
            assert response.headers["Transfer-Encoding"] == "chunked"
            size = sum(len(chunk) for chunk in response.iter_raw())
        elapsed = time.perf_counter() - started
    assert size > 10_000_000
    # About 1.2 s on the 2-core CI machine; line tracing (coverage) makes the hot loop several times slower.
    assert elapsed < (3 if sys.gettrace() is None else 20), elapsed


def test_trickle_fault_sends_the_same_body_in_small_timed_pieces(api: FakeAdminAPI, client: httpx.Client) -> None:
    """trickle_seconds streams the body a few bytes at a time, that long apart, on trickle_path only; the bytes
    are those of the untrickled reply."""
    whole = client.get("/organization/projects").content
    api.faults.update({"trickle_seconds": 0.002, "trickle_path": "/v1/organization/projects"})
    started = time.perf_counter()
    with client.stream("GET", "/organization/projects") as response:
        pieces = list(response.iter_raw())
    elapsed = time.perf_counter() - started
    assert b"".join(pieces) == whole
    assert len(pieces) > 10 and max(map(len, pieces)) <= 64
    assert elapsed >= 0.002 * len(whole) / 8 * 0.9
    fast = time.perf_counter()
    assert costs(client).status_code == 200 and time.perf_counter() - fast < 0.5  # another path: not trickled
