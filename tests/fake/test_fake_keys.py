"""Tests of the simulated organization's API keys and hard spend limits, and of costs and usage by key.

Requests go in-process: an httpx `MockTransport` hands them to `FakeAdminAPI.handle`, so no socket is opened;
the contract helpers come from tests/fake/test_fake_api.py.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx
import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import day_start
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.keys import KEYS_EPOCH, MANY_KEYS, Shares, split
from openai_cost_exporter.fake.org import FakeOrg, to_nanos
from tests.fake.test_fake_api import validate, validate_error

KEY = "sk-admin-test-0123456789abcdef"
NOON = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
TODAY = NOON.date()
DAY = dt.timedelta(days=1)
_Sums = dict[tuple[Any, ...], Decimal]


def in_process(api: FakeAdminAPI) -> httpx.Client:
    """A client whose requests `api.handle` answers directly."""

    def answer(request: httpx.Request) -> httpx.Response:
        reply = api.handle(request.method, request.url.raw_path.decode(), request.headers.get("Authorization"), b"")
        body = reply.body if isinstance(reply.body, bytes) else "".join(reply.body).encode()
        return httpx.Response(reply.status, content=body, headers={"Content-Type": reply.content_type, **reply.headers})

    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.Client(transport=httpx.MockTransport(answer), base_url="http://fake.test/v1", headers=headers)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOON)


@pytest.fixture
def org(clock: FrozenClock) -> FakeOrg:
    return FakeOrg.generate(seed=7, project_count=40, clock=clock)


@pytest.fixture
def api(org: FakeOrg) -> FakeAdminAPI:
    return FakeAdminAPI(org, admin_key=KEY)


@pytest.fixture
def client(api: FakeAdminAPI) -> Iterator[httpx.Client]:
    with in_process(api) as c:
        yield c


def cost_sums(client: httpx.Client, start: dt.date, days: int, group_by: list[str]) -> _Sums:
    """(bucket start, project_id, api_key_id, line_item) -> amount over `days` daily buckets of one page."""
    params: dict[str, Any] = {"start_time": day_start(start), "limit": days, "group_by": group_by}
    response = client.get("/organization/costs", params=params)
    assert response.status_code == 200, response.text
    out: _Sums = {}
    for bucket in json.loads(response.content, parse_float=Decimal)["data"]:
        for r in bucket["results"]:
            key = (bucket["start_time"], r["project_id"], r["api_key_id"], r["line_item"])
            assert key not in out
            out[key] = Decimal(str(r["amount"]["value"]))
    return out


def summed(sums: Mapping[Any, Decimal], keep: tuple[int, ...]) -> _Sums:
    """`sums` with the key fields at the `keep` positions only, amounts added up."""
    out: _Sums = {}
    for key, value in sums.items():
        short = tuple(key[i] for i in keep)
        out[short] = out.get(short, Decimal(0)) + value
    return out


# ---- keys of the organization -----------------------------------------------------------------------------


def test_spending_projects_have_listed_keys_and_one_deleted_key(org: FakeOrg) -> None:
    """Each spending project lists 1-4 keys (the many-keys project 45) plus one deleted, unlisted key; projects
    that never spend have none; ids look like key_ + alphanumerics and are unique in the organization."""
    seen: set[str] = set()
    for p in org.projects:
        every, listed = org.all_api_keys(p.id), org.api_keys(p.id)
        if p.daily_usd == 0:
            assert every == listed == []
            continue
        if p.id == org.many_keys_project_id:
            assert len(listed) == MANY_KEYS
        else:
            assert 1 <= len(listed) <= 4
        assert [k for k in every if k.deleted] == [every[-1]] and every[:-1] == listed
        assert all(re.fullmatch(r"key_[A-Za-z0-9]+", k.id) for k in every)
        assert seen.isdisjoint(k.id for k in every)
        seen |= {k.id for k in every}
    assert org.many_keys_project_id is not None and len(org.api_keys(org.many_keys_project_id)) > 40


def test_keys_are_deterministic_and_leave_the_numbers_alone(clock: FrozenClock) -> None:
    """Same seed, same keys whatever order projects are asked in; amounts are those of an org whose keys were
    never looked at."""
    a, b, untouched = (FakeOrg.generate(seed=3, project_count=30, clock=clock) for _ in range(3))
    ids = [p.id for p in a.projects]
    first = [a.all_api_keys(pid) for pid in ids]
    assert [b.all_api_keys(pid) for pid in reversed(ids)] == first[::-1]
    for n in range(0, 40, 3):
        assert a.line_item_totals(TODAY - n * DAY) == untouched.line_item_totals(TODAY - n * DAY)


def test_owners_are_users_or_service_accounts(org: FakeOrg) -> None:
    """User owners have an e-mail and are shared across projects; service accounts have none."""
    keys = [k for p in org.projects for k in org.all_api_keys(p.id)]
    users = {k.owner for k in keys if k.owner.type == "user"}
    services = [k.owner for k in keys if k.owner.type == "service_account"]
    assert users and services
    assert all(u.email and u.email.endswith("@example.com") and u.id.startswith("user-") for u in users)
    assert all(s.email is None and s.id.startswith("svc_acct_") for s in services)
    assert len(users) < sum(1 for k in keys if k.owner.type == "user")


@pytest.mark.parametrize(
    ("n", "weights"), [(10, (1, 1, 1)), (-7, (3, 5)), (0, (2, 9)), (10**15 + 7, (1, 2, 3, 97)), (5, (4,))]
)
def test_split_adds_up_exactly(n: int, weights: tuple[int, ...]) -> None:
    """split gives floored shares, the last slot the remainder: the parts always sum to the whole."""
    shares = Shares(tuple(f"key_{i}" for i in range(len(weights))), weights, sum(weights))
    parts = split(n, shares)
    assert sum(parts) == n and len(parts) == len(weights)
    assert parts[:-1] == [n * w // sum(weights) for w in weights[:-1]]


# ---- costs by key -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_zero", [False, True])
def test_key_amounts_add_up_to_every_cell_of_every_day(clock: FrozenClock, include_zero: bool) -> None:
    """For every project, day of the history and line item, the key parts sum to the cell exactly, with the
    tests' switches on too; key_totals sums to daily_totals."""
    org = FakeOrg.generate(seed=11, project_count=30, clock=clock, rhythm_projects=True, runaway_project=True)
    pid = org.projects[4].id
    org.set_cost(TODAY - 3 * DAY, pid, org.project(pid).line_items[0], Decimal("-1.000000003"))
    org.scale_today(pid, Decimal("1.7"))
    for n in range(401):
        day = TODAY - n * DAY
        cells = {(p, li): v for p, li, v in org.cells(day, include_zero=include_zero)}
        parts: dict[tuple[str | None, str], int] = {}
        for p, _, li, v in org.key_cells(day, include_zero=include_zero):
            parts[(p, li)] = parts.get((p, li), 0) + v
        assert parts == cells, day
    for n in (0, 1, 20):
        day = TODAY - n * DAY
        totals = org.daily_totals(day)
        assert summed(org.key_totals(day), (0,)) == {(p,): v for p, v in totals.items()}
        assert summed(org.key_line_item_totals(day), (0, 2)) == org.line_item_totals(day)


@pytest.mark.parametrize(
    ("group_by", "plain", "keep"),
    [
        (["project_id", "line_item", "api_key_id"], ["project_id", "line_item"], (0, 1, 3)),
        (["project_id", "api_key_id"], ["project_id"], (0, 1)),
        (["line_item", "api_key_id"], ["line_item"], (0, 3)),
        (["api_key_id"], [], (0,)),
    ],
)
def test_costs_by_key_add_up_to_the_rows_without_keys(
    client: httpx.Client, group_by: list[str], plain: list[str], keep: tuple[int, ...]
) -> None:
    """Grouped by api_key_id as well, the rows of each bucket sum exactly to the rows without the key."""
    by_key = cost_sums(client, TODAY - 6 * DAY, 7, group_by)
    without = cost_sums(client, TODAY - 6 * DAY, 7, plain)
    assert {k[2] for k in without} == {None}
    assert summed(by_key, keep) == summed(without, keep)
    assert len(by_key) > len(without)


def test_costs_by_key_match_the_truth_and_show_deleted_and_null_keys(client: httpx.Client, org: FakeOrg) -> None:
    """Rows by (project, key) are key_totals; the deleted key spends before its deletion day, not from it on; spend
    outside keys comes with api_key_id null."""
    pid = org.many_keys_project_id
    assert pid is not None
    deleted = org.all_api_keys(pid)[-1]
    assert deleted.deleted_at is not None
    gone = dt.datetime.fromtimestamp(deleted.deleted_at, dt.UTC).date() + DAY
    start = gone - 3 * DAY
    got = cost_sums(client, start, 6, ["project_id", "api_key_id"])
    for n in range(6):
        day = start + n * DAY
        expected = {(day_start(day), p, k, None): v for (p, k), v in org.key_totals(day).items()}
        assert {k: v for k, v in got.items() if k[0] == day_start(day)} == expected
        assert ((day_start(day), pid, deleted.id, None) in got) == (day < gone)
    assert any(k[1] is not None and k[2] is None for k in got)  # a project spending outside keys
    unattributed = next(d for n in range(30) if None in org.daily_totals(d := TODAY - n * DAY))
    assert org.key_totals(unattributed)[(None, None)] == org.daily_totals(unattributed)[None]  # no key either


def test_costs_by_key_refused_before_the_key_epoch(client: httpx.Client) -> None:
    """group_by=api_key_id (either array encoding) with a start_time before 1764979200 is a 400 naming the epoch,
    on param group_by; from the epoch on it is served, and without the key an earlier start is fine."""
    for group_by in ({"group_by": "api_key_id"}, {"group_by[]": ["project_id", "api_key_id"]}):
        refused = client.get("/organization/costs", params={"start_time": KEYS_EPOCH - 1, **group_by})
        assert refused.status_code == 400
        error = validate_error(refused)
        assert "1764979200" in error["message"] and "api_key_id" in error["message"]
        assert error["param"] == "group_by"
        served = client.get("/organization/costs", params={"start_time": KEYS_EPOCH, "limit": 2, **group_by})
        assert served.status_code == 200
        validate(served)
        assert served.json()["data"][0]["start_time"] == KEYS_EPOCH
    earlier = client.get("/organization/costs", params={"start_time": KEYS_EPOCH - 86400, "group_by": "project_id"})
    assert earlier.status_code == 200


def test_costs_by_key_page_by_days_and_walk_every_day_once(client: httpx.Client, org: FakeOrg) -> None:
    """Paging by key: `limit` still counts daily buckets; following next_page gives each day once, its rows the
    day's key_line_item_totals."""
    start = TODAY - 9 * DAY
    params: dict[str, Any] = {"start_time": day_start(start), "limit": 3,
                              "group_by": ["project_id", "line_item", "api_key_id"]}  # fmt: skip
    days: list[int] = []
    while True:
        page = json.loads(client.get("/organization/costs", params=params).content, parse_float=Decimal)
        assert len(page["data"]) <= 3
        for bucket in page["data"]:
            day = dt.datetime.fromtimestamp(bucket["start_time"], dt.UTC).date()
            rows = {(r["project_id"], r["api_key_id"], r["line_item"]): r["amount"]["value"] for r in bucket["results"]}
            assert rows == org.key_line_item_totals(day)
            days.append(bucket["start_time"])
        if not page["has_more"]:
            break
        params["page"] = page["next_page"]
    assert days == [day_start(start + n * DAY) for n in range(10)]


def test_api_key_ids_keeps_only_those_keys(client: httpx.Client, org: FakeOrg) -> None:
    """api_key_ids filters to those keys' shares, whether or not the page is grouped by key."""
    pid = org.many_keys_project_id
    assert pid is not None
    chosen = [k.id for k in org.all_api_keys(pid)[:3]]
    day = TODAY - DAY
    params: dict[str, Any] = {"start_time": day_start(day), "limit": 1, "api_key_ids": chosen}
    grouped = client.get("/organization/costs", params={**params, "group_by": ["api_key_id"]}).json()
    rows = {r["api_key_id"]: Decimal(str(r["amount"]["value"])) for r in grouped["data"][0]["results"]}
    assert rows == {k: v for (p, k), v in org.key_totals(day).items() if k in chosen}
    total = client.get("/organization/costs", params=params).json()["data"][0]["results"]
    assert [Decimal(str(r["amount"]["value"])) for r in total] == [sum(rows.values())]


def test_string_amounts_by_key_carry_the_same_money(api: FakeAdminAPI, client: httpx.Client, org: FakeOrg) -> None:
    """With string amounts (zero parts included, as 0E-6176) the key rows still add up to the truth."""
    api.faults.amount_format = "string"
    day = TODAY - 2 * DAY
    got = cost_sums(client, day, 1, ["project_id", "line_item", "api_key_id"])
    assert any(v == 0 for v in got.values())
    assert {(p, k, li): v for (_, p, k, li), v in got.items() if v} == org.key_line_item_totals(day)


# ---- usage by key ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "width"), [("completions", "1h"), ("completions", "1d"), ("embeddings", "1h")])
def test_usage_by_key_adds_up_to_the_rows_without_keys(client: httpx.Client, kind: str, width: str) -> None:
    """Grouped by api_key_id as well, tokens and requests of each (bucket, project, model) sum exactly to the row
    without the key; per key, cached input never exceeds input."""
    fields = ("input_tokens", "output_tokens", "input_cached_tokens", "num_model_requests")
    start = day_start(TODAY - 2 * DAY)

    def counts(group_by: list[str]) -> dict[tuple[Any, ...], list[int]]:
        limit = 3 if width == "1d" else 12
        params: dict[str, Any] = {"start_time": start, "bucket_width": width, "group_by": group_by, "limit": limit}
        response = client.get(f"/organization/usage/{kind}", params=params)
        validate(response)
        out: dict[tuple[Any, ...], list[int]] = {}
        for b in response.json()["data"]:
            for r in b["results"]:
                assert r.get("input_cached_tokens", 0) <= r["input_tokens"]
                sums = out.setdefault((b["start_time"], r["project_id"], r["model"]), [0, 0, 0, 0])
                for i, name in enumerate(fields):
                    sums[i] += r.get(name, 0)
        return out

    by_key, without = counts(["project_id", "model", "api_key_id"]), counts(["project_id", "model"])
    assert without and by_key == without


def test_usage_by_key_uses_the_cost_shares(client: httpx.Client, org: FakeOrg) -> None:
    """A project's daily input tokens split over its keys by the weights its costs split with."""
    pid = org.many_keys_project_id
    assert pid is not None
    day = TODAY - DAY
    params: dict[str, Any] = {"start_time": day_start(day), "limit": 1, "project_ids": pid,
                              "group_by": ["project_id", "model", "api_key_id"]}  # fmt: skip
    rows = client.get("/organization/usage/completions", params=params).json()["data"][0]["results"]
    shares = org.keys.shares(pid, day.toordinal())
    for model in {r["model"] for r in rows}:
        mine = {r["api_key_id"]: r for r in rows if r["model"] == model}
        total = sum(r["input_tokens"] - r["input_cached_tokens"] for r in mine.values())
        parts = dict(zip(shares.slots, split(total, shares), strict=True))
        assert {k: r["input_tokens"] - r["input_cached_tokens"] for k, r in mine.items()} == {
            k: v for k, v in parts.items() if k in mine
        }


# ---- the key listing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [None, 1, 7, 20, 100])
def test_key_listing_pages_list_every_key_once_and_never_the_deleted_one(
    api: FakeAdminAPI, client: httpx.Client, org: FakeOrg, limit: int | None
) -> None:
    """Paging with `after` lists each of the many-keys project's keys once, in order, never its deleted key;
    every request is logged under its path."""
    pid = org.many_keys_project_id
    assert pid is not None
    params: dict[str, Any] = {} if limit is None else {"limit": limit}
    ids: list[str] = []
    pages = 0
    while True:
        page = client.get(f"/organization/projects/{pid}/api_keys", params=params).json()
        assert len(page["data"]) <= (limit or 20)
        ids += [k["id"] for k in page["data"]]
        pages += 1
        if not page["has_more"]:
            break
        params["after"] = page["last_id"]
    assert ids == [k.id for k in org.api_keys(pid)]
    assert len(set(ids)) == MANY_KEYS and org.all_api_keys(pid)[-1].id not in ids
    assert pages == math.ceil(MANY_KEYS / (limit or 20))
    assert api.request_counts() == {f"/v1/organization/projects/{pid}/api_keys": pages}


def test_listed_keys_carry_names_owners_and_use(client: httpx.Client, org: FakeOrg) -> None:
    """The listing has each key's name, redacted value, owner and last use; unused keys have last_used_at null."""
    pid = org.many_keys_project_id
    assert pid is not None
    listed = client.get(f"/organization/projects/{pid}/api_keys", params={"limit": 100}).json()["data"]
    for wire, key in zip(listed, org.api_keys(pid), strict=True):
        assert (wire["id"], wire["name"], wire["last_used_at"]) == (key.id, key.name, key.last_used_at)
        assert wire["redacted_value"].startswith("sk-") and "..." in wire["redacted_value"]
        assert wire["owner"][key.owner.type]["name"] == key.owner.name
    assert any(k["last_used_at"] is None for k in listed) and any('"' in k["name"] for k in listed)


def test_key_listing_edges(client: httpx.Client, org: FakeOrg) -> None:
    """The deleted key is no cursor; owner_project_access=inactive lists nothing; a project that never spends
    lists no key."""
    pid = org.many_keys_project_id
    assert pid is not None
    deleted = org.all_api_keys(pid)[-1].id
    response = client.get(f"/organization/projects/{pid}/api_keys", params={"after": deleted})
    assert response.status_code == 400 and validate_error(response)["param"] == "after"
    inactive = client.get(f"/organization/projects/{pid}/api_keys", params={"owner_project_access": "inactive"})
    assert inactive.json() == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    idle = next(p.id for p in org.projects if p.daily_usd == 0)
    assert client.get(f"/organization/projects/{idle}/api_keys").json()["data"] == []


# ---- hard spend limits -------------------------------------------------------------------------------------


def limit_of(client: httpx.Client, project_id: str | None) -> httpx.Response:
    path = "/organization/spend_limit" if project_id is None else f"/organization/projects/{project_id}/spend_limit"
    return client.get(path)


def test_generated_limits_have_their_roles(client: httpx.Client, org: FakeOrg) -> None:
    """In cents: the organization's limit is well above its month; the near-limit project's month-to-date is ~85%
    of its limit (ceil of mtd / 0.85); one project has reached its limit and is enforcing; far ones are far."""
    body = limit_of(client, None).json()
    assert body["currency"] == "USD" and body["interval"] == "month" and body["enforcement"]["status"] == "inactive"
    monthly = sum((p.daily_usd for p in org.projects), Decimal(0)) * 31
    assert Decimal(body["threshold_amount"]) / 100 > 2 * monthly
    near = org.near_limit_project_id
    assert near is not None
    mtd = org.month_to_date(near)
    near_body = limit_of(client, near).json()
    assert near_body["threshold_amount"] == math.ceil(mtd / Decimal("0.85") * 100)
    assert Decimal("0.849") < mtd / (Decimal(near_body["threshold_amount"]) / 100) <= Decimal("0.85")
    reached = org.limit_reached_project_id
    assert reached is not None
    reached_body = limit_of(client, reached).json()
    assert reached_body["enforcement"]["status"] == "enforcing"
    assert 0 < Decimal(reached_body["threshold_amount"]) / 100 <= org.month_to_date(reached)
    for pid in org.far_limit_project_ids:
        assert Decimal(limit_of(client, pid).json()["threshold_amount"]) / 100 > 5 * org.month_to_date(pid)
    assert len(org.far_limit_project_ids) == 2


def test_near_limit_on_the_first_uses_twice_the_daily_spend() -> None:
    """On the 1st before anything is billed (cost lag), the near limit is ceil(2 x daily spend / 0.85) in cents."""
    org = FakeOrg.generate(seed=7, project_count=40, clock=FrozenClock(dt.datetime(2026, 12, 1, 1, tzinfo=dt.UTC)))
    near = org.near_limit_project_id
    assert near is not None and org.month_to_date(near) == 0
    assert org.spend_limit(near) == (math.ceil(2 * org.project(near).daily_usd / Decimal("0.85") * 100), "inactive")


def test_set_spend_limit_changes_and_removes_limits(client: httpx.Client, org: FakeOrg) -> None:
    """set_spend_limit sets a project's or the organization's limit, None removes it (then 404); bad values and
    unknown projects are refused."""
    pid = next(p.id for p in org.projects if org.spend_limit(p.id) is None)
    assert limit_of(client, pid).status_code == 404
    org.set_spend_limit(pid, 12345, "enforcing")
    body = limit_of(client, pid).json()
    assert (body["threshold_amount"], body["enforcement"]["status"]) == (12345, "enforcing")
    org.set_spend_limit(None, None)
    response = limit_of(client, None)
    assert response.status_code == 404 and "organization" in validate_error(response)["message"]
    assert org.spend_limit(None) is None
    for bad in ((pid, -1, "inactive"), (pid, 1.5, "inactive"), (pid, 5, "maybe"), ("proj_nope", 5, "inactive")):
        with pytest.raises(ValueError, match=r"cents|status|project"):
            org.set_spend_limit(*bad)
    assert org.spend_limit(pid) == (12345, "enforcing")


def test_control_spend_limit_endpoint(api: FakeAdminAPI, client: httpx.Client, org: FakeOrg) -> None:
    """POST /_fake/spend_limit sets a limit over HTTP (status defaults to inactive), null cents removes it, a bad
    body is a 400; control requests are not logged as API requests."""
    pid = org.projects[5].id

    def post(payload: object) -> int:
        return api.handle("POST", "/_fake/spend_limit", None, json.dumps(payload).encode()).status

    assert post({"project_id": pid, "threshold_cents": 500}) == 200
    body = limit_of(client, pid).json()
    assert (body["threshold_amount"], body["enforcement"]["status"]) == (500, "inactive")
    assert post({"project_id": None, "threshold_cents": 99, "status": "enforcing"}) == 200
    assert org.spend_limit(None) == (99, "enforcing")
    assert post({"project_id": pid, "threshold_cents": None}) == 200
    assert limit_of(client, pid).status_code == 404
    assert post({"project_id": pid, "threshold_cents": "5"}) == 400
    assert api.request_counts() == {f"/v1/organization/projects/{pid}/spend_limit": 2}


def test_spend_limit_empty_fault_also_covers_the_organization(api: FakeAdminAPI, client: httpx.Client) -> None:
    """With spend_limit_empty, an organization without a limit answers 200 {} too."""
    api.org.set_spend_limit(None, None)
    api.faults.update({"spend_limit_empty": True})
    response = limit_of(client, None)
    assert response.status_code == 200 and response.json() == {}


# ---- cost of keys --------------------------------------------------------------------------------------------


def test_keys_of_a_big_org_are_cheap(clock: FrozenClock) -> None:
    """2,000 projects: generating the org, then a 3-day page by project, line item and key, in a few seconds."""
    started = time.perf_counter()
    org = FakeOrg.generate(seed=1, project_count=2000, clock=clock)
    with in_process(FakeAdminAPI(org, admin_key=KEY)) as c:
        params: dict[str, Any] = {"start_time": day_start(TODAY - 2 * DAY), "limit": 3,
                                  "group_by": ["project_id", "line_item", "api_key_id"]}  # fmt: skip
        page = json.loads(c.get("/organization/costs", params=params).content, parse_float=Decimal)
    elapsed = time.perf_counter() - started
    results = [r for b in page["data"] for r in b["results"]]
    assert len(results) > 3 * 3 * 1500
    billed = sum(to_nanos(v) for n in range(3) for v in org.daily_totals(TODAY - n * DAY).values())
    assert sum(to_nanos(r["amount"]["value"]) for r in results) == billed
    assert elapsed < 10, elapsed
