"""Contract tests of the production client's requests: every request `AdminClient` sends, as the real code builds it,
is validated with openapi-core against tests/contract/openai-admin-openapi.yaml (a verbatim copy of the shared
openai-admin-openapi.yaml), the way tests/fake/test_fake_api.py validates the fake's answers.

The client talks to the spec's own server URL through an `httpx.MockTransport` that records each request and hands
it to `FakeAdminAPI.handle` in-process, so paging follows real cursors and nothing leaves the process.

openapi-core checks the path and method (an operation), the query parameters (required ones, types, enums, array
encoding as `style: form, explode: true`, i.e. repeated keys) and the bearer security scheme. It lets through what
it does not forbid, so `check_request` adds the rest: no parameter the operation does not declare (`group_by[]`
included), no scalar sent twice or blank, booleans and integers spelled as the spec's examples spell them, `limit`
within the range the parameter's description states (the spec has no `maximum`), no request body and no header
beyond HTTP's own and the `Authorization` the security scheme asks for.
"""

from __future__ import annotations

import copy
import datetime as dt
import inspect
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.testing import MockRequest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import API_KEYS_EPOCH
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.figures.estimates import USAGE_KINDS, fetch_usage, key_rates
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.sources.openai import client as openai_client
from openai_cost_exporter.sources.openai.client import PROJECTS_LIMIT, AdminClient, build_http_client
from openai_cost_exporter.store.state import open_state
from openai_cost_exporter.store.usage_store import UsageStore

KEY = "sk-admin-contract-0123456789abcdef"
NOW = dt.datetime(2026, 11, 25, 13, tzinfo=dt.UTC)
TODAY = NOW.date()
DAY = dt.timedelta(days=1)
HOUR = 3600
API_URL = "https://api.openai.com/v1"  # the spec's server: requests are validated as sent, never rewritten
SPEC_PATH = Path(__file__).parent / "contract" / "openai-admin-openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
CONTRACT = OpenAPI.from_dict(copy.deepcopy(SPEC))
FINDER = APICallPathFinder(CONTRACT.spec)

#: Every operation the client may call. A new call must be added here, and to SCENARIOS, to pass.
EXPECTED_OPERATIONS = frozenset(
    {
        "usage-costs",
        "usage-completions",
        "usage-embeddings",
        "list-projects",
        "list-project-api-keys",
        "Getorganizationspendlimit",
        "Getprojectspendlimit",
    }
)
#: The client's public calls, each of which sends requests; a new one fails `test_every_client_call_is_covered`.
CLIENT_CALLS = frozenset({"iter_costs", "iter_usage", "list_projects", "list_api_keys", "spend_limit"})
#: Public methods of the client that send nothing: how it pages (the source port's `page_days`).
NO_REQUEST = frozenset({"page_days"})
#: Headers HTTP itself sends; the spec declares no header parameter, so anything else but `Authorization` is extra.
HTTP_HEADERS = frozenset({"host", "accept", "accept-encoding", "connection", "user-agent"})
#: `limit` ranges the spec states only in prose: (operationId, bucket_width or None) -> (min, max), and the words
#: of the description that state it (checked by `test_limit_ranges_are_the_ones_the_spec_describes`).
LIMIT_RANGES: dict[tuple[str, str | None], tuple[int, int, str]] = {
    ("usage-costs", None): (1, 180, "between 1 and 180"),
    ("list-projects", None): (1, 100, "between 1 and 100"),
    ("list-project-api-keys", None): (1, 100, "between 1 and 100"),
    **{
        (f"usage-{kind}", width): (1, most, f"`bucket_width={width}`: default: {usual}, max: {most}")
        for kind in ("completions", "embeddings")
        for width, usual, most in (("1d", 7, 31), ("1h", 24, 168), ("1m", 60, 1440))
    },
}
_INTEGER = re.compile(r"-?[0-9]+")


class ContractBroken(AssertionError):
    """A request the spec does not allow, found by the checks openapi-core does not make."""


# ---- the checker --------------------------------------------------------------------------------------------


def spec_request(request: httpx.Request) -> MockRequest:
    """The recorded request as openapi-core reads it: its own URL, query (repeated keys kept) and headers."""
    args: dict[str, list[str]] = {}
    for name, value in request.url.params.multi_items():
        args.setdefault(name, []).append(value)
    host = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
    path = request.url.raw_path.decode("ascii").partition("?")[0]
    return MockRequest(host, request.method, path, args=args, headers=dict(request.headers.multi_items()))


def declared_parameters(template: str, method: str) -> dict[str, dict[str, Any]]:
    """The query parameters the spec declares for one operation (path-level ones included), by name."""
    item: dict[str, Any] = SPEC["paths"][template]
    declared = [*item.get("parameters", []), *item[method].get("parameters", [])]
    return {p["name"]: p for p in declared if p["in"] == "query"}


def check_request(request: httpx.Request) -> str:
    """The operationId of a request the spec allows; raises OpenAPIError or ContractBroken if it does not."""
    mock = spec_request(request)
    CONTRACT.validate_request(mock)  # operation, parameters (types, enums, arrays, required), security
    found = FINDER.find(mock.method, mock.host_url + mock.path)
    operation_id = str(found.operation["operationId"])
    if request.content:
        raise ContractBroken(f"{operation_id}: a body was sent, and the operation takes none")
    declared = declared_parameters(str(found.path_result.pattern), mock.method)
    _check_query(operation_id, declared, mock.args or {})
    _check_headers(operation_id, request.headers)
    return operation_id


def _check_query(operation_id: str, declared: dict[str, dict[str, Any]], query: dict[str, list[str]]) -> None:
    for name, values in query.items():
        if name not in declared:
            raise ContractBroken(f"{operation_id}: {name!r} is not a parameter of the operation")
        schema = declared[name]["schema"]
        kind = schema["type"]
        if kind != "array" and len(values) > 1:
            raise ContractBroken(f"{operation_id}: {name!r} is not an array but was sent {len(values)} times")
        item_kind = schema["items"]["type"] if kind == "array" else kind
        for value in values:
            _check_value(operation_id, name, item_kind, value)
    if "limit" in query:
        width = query.get("bucket_width", [declared.get("bucket_width", {}).get("schema", {}).get("default")])[0]
        key = (operation_id, width) if (operation_id, width) in LIMIT_RANGES else (operation_id, None)
        low, high, _ = LIMIT_RANGES[key]
        if not low <= int(query["limit"][0]) <= high:
            raise ContractBroken(f"{operation_id}: limit={query['limit'][0]} is outside {low}..{high}")


def _check_value(operation_id: str, name: str, kind: str, value: str) -> None:
    if not value:
        raise ContractBroken(f"{operation_id}: {name!r} was sent blank")
    if kind == "integer" and not _INTEGER.fullmatch(value):
        raise ContractBroken(f"{operation_id}: {name}={value!r} is not an integer as the spec writes one")
    if kind == "boolean" and value not in ("true", "false"):
        raise ContractBroken(f"{operation_id}: {name}={value!r} is not `true` or `false`")


def _check_headers(operation_id: str, headers: httpx.Headers) -> None:
    extra = {name.lower() for name in headers} - HTTP_HEADERS - {"authorization"}
    if extra:
        raise ContractBroken(f"{operation_id}: headers the spec does not declare: {sorted(extra)}")
    if headers.get_list("Authorization") != [f"Bearer {KEY}"]:
        raise ContractBroken(f"{operation_id}: the Authorization header is not one `Bearer <admin key>`")


# ---- the production client, recorded ------------------------------------------------------------------------


@dataclass
class Scene:
    """The production client on a recording transport in front of the fake, and the projects the calls name."""

    client: AdminClient
    api: FakeAdminAPI
    requests: list[httpx.Request]
    limited: str  # a project with a hard spend limit
    unlimited: str  # a project without one (the fake answers 404)
    keyed: str  # a project with several API keys
    state: Path


@pytest.fixture(scope="module")
def org() -> FakeOrg:
    """More projects than one page of the projects listing, so that it pages."""
    fake = FakeOrg.generate(seed=7, project_count=PROJECTS_LIMIT + 20, clock=FrozenClock(NOW))
    ids = [p.id for p in fake.projects]
    fake.set_spend_limit(None, 500_000)
    fake.set_spend_limit(ids[0], 20_000, "enforcing")
    fake.set_spend_limit(ids[1], None)
    return fake


@pytest.fixture
def scene(org: FakeOrg, tmp_path: Path) -> Iterator[Scene]:
    api = FakeAdminAPI(org, admin_key=KEY)
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        reply = api.handle(request.method, request.url.raw_path.decode(), request.headers.get("Authorization"), b"")
        body = reply.body if isinstance(reply.body, bytes) else "".join(reply.body).encode()
        return httpx.Response(reply.status, content=body, headers={"Content-Type": reply.content_type, **reply.headers})

    ids = [p.id for p in org.projects]
    keyed = max(ids, key=lambda pid: len(org.api_keys(pid)))
    with build_http_client(API_URL, KEY, transport=httpx.MockTransport(answer)) as http:
        yield Scene(AdminClient(http), api, requests, ids[0], ids[1], keyed, tmp_path / "state.sqlite3")


def _usage_as_the_cycle_fetches_it(s: Scene) -> None:
    conn: sqlite3.Connection = open_state(s.state)
    try:
        book = PriceBook()
        assert fetch_usage(s.client, UsageStore(conn), book, NOW, history_days=1) > 0
        assert any(r.url.params.get("bucket_width") == "1m" for r in s.requests)  # the recent window's minutes
        key_rates(s.client, book, NOW, [s.keyed])
    finally:
        conn.close()


def _keys_paged(s: Scene) -> None:
    s.api.faults.key_page_cap = 10  # ten keys a page, whatever `limit` asks: the listing pages by `after`
    assert len(s.client.list_api_keys(s.keyed)) > 10


def _limits(s: Scene) -> None:
    assert s.client.spend_limit(s.limited) is not None
    assert s.client.spend_limit(s.unlimited) is None  # a 404, read as "no limit"


@dataclass(frozen=True)
class Scenario:
    """One way the production code calls the client: what it runs, the operations it reaches, its cursor."""

    run: Callable[[Scene], object]
    operations: frozenset[str]
    cursor: str | None = None  # the paging parameter the scenario must have followed


def _ops(*names: str) -> frozenset[str]:
    return frozenset(names)


_HOUR_NOW = int(NOW.timestamp()) // HOUR * HOUR
SCENARIOS: dict[str, Scenario] = {
    "costs by project, paged": Scenario(
        lambda s: list(s.client.iter_costs(TODAY - 3 * DAY, TODAY + DAY, limit=1)), _ops("usage-costs"), "page"
    ),
    "costs by project and line item, some projects": Scenario(
        lambda s: list(
            s.client.iter_costs(TODAY - DAY, TODAY + DAY, line_items=True, limit=1, project_ids=[s.limited, s.keyed])
        ),
        _ops("usage-costs"),
        "page",
    ),
    "costs by API key, across the key epoch": Scenario(
        lambda s: list(s.client.iter_costs(API_KEYS_EPOCH - 2 * DAY, API_KEYS_EPOCH + 2 * DAY, api_keys=True)),
        _ops("usage-costs"),
    ),
    "costs by API key and line item, paged": Scenario(
        lambda s: list(s.client.iter_costs(TODAY - 2 * DAY, TODAY + DAY, line_items=True, api_keys=True, limit=2)),
        _ops("usage-costs"),
        "page",
    ),
    "completions usage, paged": Scenario(
        lambda s: list(s.client.iter_usage("completions", _HOUR_NOW - 24 * HOUR, _HOUR_NOW + HOUR)),
        _ops("usage-completions"),
        "page",
    ),
    "embeddings usage by API key, some projects, paged": Scenario(
        lambda s: list(
            s.client.iter_usage("embeddings", _HOUR_NOW - 12 * HOUR, _HOUR_NOW, api_keys=True, project_ids=[s.keyed])
        ),
        _ops("usage-embeddings"),
        "page",
    ),
    "completions usage in 1-minute buckets, paged": Scenario(
        lambda s: list(s.client.iter_usage("completions", _HOUR_NOW - 30 * 60, _HOUR_NOW, width="1m", limit=15)),
        _ops("usage-completions"),
        "page",
    ),
    "usage as the cycle fetches it": Scenario(
        _usage_as_the_cycle_fetches_it, _ops(*(f"usage-{kind}" for kind in USAGE_KINDS)), "page"
    ),
    "projects, archived included, paged": Scenario(lambda s: s.client.list_projects(), _ops("list-projects"), "after"),
    "API keys of a project, paged": Scenario(_keys_paged, _ops("list-project-api-keys"), "after"),
    "the organization's hard spend limit": Scenario(
        lambda s: s.client.spend_limit(None), _ops("Getorganizationspendlimit")
    ),
    "projects' hard spend limits, set or not": Scenario(_limits, _ops("Getprojectspendlimit")),
}


# ---- the client's requests against the spec -----------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_client_requests_match_the_spec(scene: Scene, name: str) -> None:
    """Every request the production client sends in this scenario is one the spec allows, of the operations expected."""
    scenario = SCENARIOS[name]
    scenario.run(scene)
    assert scene.requests, "the scenario sent no request"
    seen = {check_request(request) for request in scene.requests}
    assert seen == scenario.operations
    if scenario.cursor is not None:  # the paging parameter was sent, on later pages only
        sent = [scenario.cursor in request.url.params for request in scene.requests]
        assert any(sent), f"no request followed a `{scenario.cursor}` cursor"
        assert not sent[0]


def test_every_operation_the_client_calls_is_covered(scene: Scene) -> None:
    """Together the scenarios reach exactly the operations the client calls, each request valid."""
    seen: set[str] = set()
    for scenario in SCENARIOS.values():
        scene.requests.clear()
        scenario.run(scene)
        seen |= {check_request(request) for request in scene.requests}
    assert seen == EXPECTED_OPERATIONS
    assert {f"usage-{kind}" for kind in USAGE_KINDS} <= EXPECTED_OPERATIONS  # a new usage kind needs coverage


def test_every_client_call_is_covered() -> None:
    """The client's public calls and endpoint paths are the ones covered here: a new one fails until covered."""
    public = {name for name, _ in inspect.getmembers(AdminClient, inspect.isfunction) if not name.startswith("_")}
    assert public - NO_REQUEST == CLIENT_CALLS
    paths = {name for name in vars(openai_client) if name.endswith("_PATH")}
    assert paths == {"COSTS_PATH", "PROJECTS_PATH", "SPEND_LIMIT_PATH", "USAGE_PATH"}  # a new endpoint: cover it


def test_costs_groupings_are_sent_as_the_spec_encodes_arrays(scene: Scene) -> None:
    """Costs groupings go as repeated `group_by` keys, `api_key_id` only from the key epoch on."""
    list(scene.client.iter_costs(API_KEYS_EPOCH - DAY, API_KEYS_EPOCH + DAY, line_items=True, api_keys=True))
    for request in scene.requests:
        check_request(request)
    groupings = [tuple(request.url.params.get_list("group_by")) for request in scene.requests]
    assert groupings == [("project_id", "line_item"), ("project_id", "line_item", "api_key_id")]
    start_times = [int(request.url.params["start_time"]) for request in scene.requests]
    assert start_times[1] == int(dt.datetime.combine(API_KEYS_EPOCH, dt.time(), dt.UTC).timestamp())


def test_limit_ranges_are_the_ones_the_spec_describes() -> None:
    """Each `limit` range the checker enforces is stated in that operation's `limit` description."""
    operations = {
        op["operationId"]: op for item in SPEC["paths"].values() for op in item.values() if "operationId" in op
    }
    for (operation_id, _), (_, _, words) in LIMIT_RANGES.items():
        (limit,) = [p for p in operations[operation_id]["parameters"] if p["name"] == "limit"]
        assert words in limit["description"], (operation_id, words)


# ---- the checker catches bad requests -----------------------------------------------------------------------


def _changed(request: httpx.Request, **query: list[str] | None) -> httpx.Request:
    """The request with some query parameters replaced (None: removed)."""
    params = [(k, v) for k, v in request.url.params.multi_items() if k not in query]
    params += [(k, v) for k, values in query.items() for v in values or []]
    return httpx.Request(request.method, request.url.copy_with(params=params), headers=request.headers)


def _header(request: httpx.Request, name: str, value: str | None) -> httpx.Request:
    headers = httpx.Headers(request.headers)
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    return httpx.Request(request.method, request.url, headers=headers)


Mutation = Callable[[httpx.Request], httpx.Request]
BAD_REQUESTS: dict[str, Mutation] = {
    "a group_by the costs endpoint lacks": lambda r: _changed(r, group_by=["project_id", "model"]),
    "a bucket_width costs do not have": lambda r: _changed(r, bucket_width=["1h"]),
    "limit above the described 180": lambda r: _changed(r, limit=["181"]),
    "limit that is not an integer": lambda r: _changed(r, limit=["seven"]),
    "start_time missing": lambda r: _changed(r, start_time=None),
    "start_time sent twice": lambda r: _changed(r, start_time=["1764115200", "1764201600"]),
    "group_by[] (the SDK's bracket encoding)": lambda r: _changed(r, group_by=None, **{"group_by[]": ["project_id"]}),
    "an undeclared parameter": lambda r: _changed(r, models=["gpt-4o"]),
    "a blank cursor": lambda r: _changed(r, page=[""]),
    "no Authorization": lambda r: _header(r, "Authorization", None),
    "a non-bearer Authorization": lambda r: _header(r, "Authorization", f"Basic {KEY}"),
    "an extra header": lambda r: _header(r, "OpenAI-Organization", "org-123"),
    "a path not in the spec": lambda r: httpx.Request("GET", r.url.copy_with(path="/v1/organization/usage/images")),
    "a method not in the spec": lambda r: httpx.Request("POST", r.url, headers=r.headers),
}


@pytest.fixture
def costs_request(scene: Scene) -> httpx.Request:
    """One costs request as the production client builds it, valid as sent."""
    list(scene.client.iter_costs(TODAY - DAY, TODAY + DAY, line_items=True))
    (request,) = scene.requests
    assert check_request(request) == "usage-costs"
    return request


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_the_checker_rejects_a_bad_request(costs_request: httpx.Request, name: str) -> None:
    """A client request changed in one way the spec forbids fails the check, so the contract test can fail."""
    with pytest.raises((OpenAPIError, ContractBroken)):
        check_request(BAD_REQUESTS[name](costs_request))


@pytest.mark.parametrize(("value", "ok"), [("true", True), ("false", True), ("yes", False), ("1", False)])
def test_booleans_are_checked_as_the_spec_spells_them(scene: Scene, value: str, ok: bool) -> None:
    """`include_archived` passes as `true` or `false` only, though openapi-core would take `yes` or `1`."""
    scene.client.list_projects()
    request = _changed(scene.requests[0], include_archived=[value])
    if ok:
        assert check_request(request) == "list-projects"
    else:
        with pytest.raises(ContractBroken):
            check_request(request)
