"""The Admin API client's key and limit parts: costs and usage by API key, the key epoch and the refused window,
the keys of a project across pages, and hard spend limits (httpx.MockTransport)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stamina

from openai_cost_exporter.core.errors import APIUnavailable, OpenAIError
from openai_cost_exporter.core.models import (
    API_KEYS_EPOCH,
    NO_API_KEY,
    ApiKey,
    CostPage,
    CostRow,
    SpendLimit,
    day_start,
)
from openai_cost_exporter.sources.openai.client import AdminClient, RetryPolicy, build_http_client

KEY = "sk-admin-Zq9TESTKEYdoNotLeak0123456789abcdef"
BASE_URL = "https://openai.test/v1"
COSTS = "/v1/organization/costs"
AFTER_EPOCH = dt.date(2025, 12, 10)
BEFORE_EPOCH = dt.date(2025, 12, 4)
CLIENT_LOGGER = "openai_cost_exporter.sources.openai.client"
REFUSAL = {
    "message": "group_by api_key_id is only available for start_time >= 1764979200.",
    "type": "invalid_request_error",
    "param": "group_by",
}

Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """A fake API that answers requests with the given replies in order and records the requests."""

    def __init__(self, *replies: httpx.Response) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.replies.pop(0)

    def params(self, index: int) -> list[tuple[str, str]]:
        return list(self.requests[index].url.params.multi_items())

    def values(self, index: int, name: str) -> list[str]:
        return self.requests[index].url.params.get_list(name)


@pytest.fixture
def make_client() -> Iterator[Callable[..., AdminClient]]:
    """Builds AdminClients on a MockTransport and closes their httpx clients afterwards."""
    opened: list[httpx.Client] = []

    def make(handler: Handler, **kwargs: Any) -> AdminClient:
        http = build_http_client(BASE_URL, KEY, transport=httpx.MockTransport(handler))
        opened.append(http)
        return AdminClient(http, **kwargs)

    yield make
    for http in opened:
        http.close()


def ok(body: object) -> httpx.Response:
    return httpx.Response(200, json=body)


def fail(status: int, error: object = "busy") -> httpx.Response:
    return httpx.Response(status, json={"error": error})


def result(value: str = "1.5", project_id: str | None = "proj_a", **extra: object) -> dict[str, object]:
    return {
        "object": "organization.costs.result",
        "amount": {"value": value, "currency": "usd"},
        "project_id": project_id,
        "line_item": None,
        **extra,
    }


def bucket(day: dt.date, *results: dict[str, object]) -> dict[str, object]:
    start = day_start(day)
    return {"object": "bucket", "start_time": start, "end_time": start + 86400, "results": list(results)}


def costs_page(*buckets: dict[str, object]) -> httpx.Response:
    return ok({"object": "page", "data": list(buckets), "has_more": False, "next_page": None})


def days(start: dt.date, count: int) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range(count)]


def window(script: Script, index: int) -> tuple[dt.date, dt.date]:
    """The [start, end) days request `index` asked for."""
    start, end = (int(script.values(index, name)[0]) for name in ("start_time", "end_time"))
    return dt.datetime.fromtimestamp(start, dt.UTC).date(), dt.datetime.fromtimestamp(end, dt.UTC).date()


def by_key_costs(client: AdminClient, start: dt.date, end: dt.date, **kwargs: Any) -> list[CostPage]:
    return list(client.iter_costs(start, end, api_keys=True, **kwargs))


@pytest.mark.parametrize(
    ("line_items", "group_by"),
    [(False, ["project_id", "api_key_id"]), (True, ["project_id", "line_item", "api_key_id"])],
)
def test_costs_by_key_group_by_key_and_project(
    make_client: Callable[..., AdminClient], line_items: bool, group_by: list[str]
) -> None:
    """With api_keys the request groups by api_key_id beside project_id (and line_item when enabled)."""
    script = Script(costs_page(bucket(AFTER_EPOCH)))
    by_key_costs(make_client(script), AFTER_EPOCH, AFTER_EPOCH + dt.timedelta(days=1), line_items=line_items)
    assert len(script.requests) == 1
    assert script.values(0, "group_by") == group_by


def test_costs_by_key_rows_carry_their_key_and_none_for_null(make_client: Callable[..., AdminClient]) -> None:
    """Pages are marked by_key and each row carries its api_key_id; a null key is spend outside keys (`none`)."""
    script = Script(
        costs_page(
            bucket(
                AFTER_EPOCH,
                result("1.25", api_key_id="key_a"),
                result("0.5", api_key_id=None),
                result("2", project_id="proj_b", api_key_id="key_b"),
            )
        )
    )
    [page] = by_key_costs(make_client(script), AFTER_EPOCH, AFTER_EPOCH + dt.timedelta(days=1))
    assert page.by_key
    assert set(page.rows) == {
        CostRow(AFTER_EPOCH, "proj_a", None, Decimal("1.25"), "key_a"),
        CostRow(AFTER_EPOCH, "proj_a", None, Decimal("0.5"), NO_API_KEY),
        CostRow(AFTER_EPOCH, "proj_b", None, Decimal("2"), "key_b"),
    }


def test_costs_by_key_with_line_items_keep_both(make_client: Callable[..., AdminClient]) -> None:
    """Grouped by line item and key, a row keeps both, and rows of one key on two line items stay apart."""
    script = Script(
        costs_page(
            bucket(
                AFTER_EPOCH,
                {**result("1", api_key_id="key_a"), "line_item": "gpt-4o, input"},
                {**result("2", api_key_id="key_a"), "line_item": "gpt-4o, output"},
            )
        )
    )
    [page] = by_key_costs(make_client(script), AFTER_EPOCH, AFTER_EPOCH + dt.timedelta(days=1), line_items=True)
    assert {(row.line_item, row.api_key_id, row.amount_usd) for row in page.rows} == {
        ("gpt-4o, input", "key_a", Decimal(1)),
        ("gpt-4o, output", "key_a", Decimal(2)),
    }


def test_costs_without_api_keys_are_unchanged(make_client: Callable[..., AdminClient]) -> None:
    """Without api_keys nothing groups by key, even after the epoch: a key sent anyway is not read."""
    script = Script(costs_page(bucket(AFTER_EPOCH, result("1", api_key_id="key_a"), result("2", api_key_id="key_b"))))
    client = make_client(script)
    [page] = client.iter_costs(AFTER_EPOCH, AFTER_EPOCH + dt.timedelta(days=1))
    assert script.values(0, "group_by") == ["project_id"]
    assert not page.by_key
    assert page.rows == (CostRow(AFTER_EPOCH, "proj_a", None, Decimal(3), None),)


def test_a_window_across_the_epoch_is_split_and_said_once(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture
) -> None:
    """Days before the key epoch come by project only, days from it by key, in two requests; one info line says so."""
    before = days(BEFORE_EPOCH, 2)
    after = days(API_KEYS_EPOCH, 2)
    script = Script(
        costs_page(*(bucket(day, result("1")) for day in before)),
        costs_page(*(bucket(day, result("2", api_key_id="key_a")) for day in after)),
    )
    with caplog.at_level(logging.INFO, logger=CLIENT_LOGGER):
        pages = by_key_costs(make_client(script), BEFORE_EPOCH, API_KEYS_EPOCH + dt.timedelta(days=2))
    assert [window(script, n) for n in range(2)] == [
        (BEFORE_EPOCH, API_KEYS_EPOCH),
        (API_KEYS_EPOCH, API_KEYS_EPOCH + dt.timedelta(days=2)),
    ]
    assert script.values(0, "group_by") == ["project_id"]
    assert script.values(1, "group_by") == ["project_id", "api_key_id"]
    assert [(page.by_key, page.days) for page in pages] == [(False, tuple(before)), (True, tuple(after))]
    assert {row.api_key_id for row in pages[0].rows} == {None}
    assert {row.api_key_id for row in pages[1].rows} == {"key_a"}
    [line] = [record for record in caplog.records if record.name == CLIENT_LOGGER]
    assert line.levelno == logging.INFO
    assert "2025-12-06" in line.getMessage()
    assert "2025-12-04 to 2025-12-05" in line.getMessage()


@pytest.mark.parametrize("end", [dt.date(2025, 12, 5), API_KEYS_EPOCH])
def test_a_window_before_the_epoch_is_one_request_by_project(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture, end: dt.date
) -> None:
    """A window that ends by the epoch is asked once, by project only, and said in one line."""
    script = Script(costs_page(bucket(BEFORE_EPOCH, result("1"))))
    with caplog.at_level(logging.INFO, logger=CLIENT_LOGGER):
        pages = by_key_costs(make_client(script), BEFORE_EPOCH, end)
    assert len(script.requests) == 1
    assert window(script, 0) == (BEFORE_EPOCH, end)
    assert "api_key_id" not in script.values(0, "group_by")
    assert [page.by_key for page in pages] == [False]
    assert len(caplog.records) == 1


def test_a_window_from_the_epoch_is_not_split(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture
) -> None:
    """A window starting on the epoch day is asked by key in one request, without a line."""
    script = Script(costs_page(bucket(API_KEYS_EPOCH, result("1", api_key_id="key_a"))))
    with caplog.at_level(logging.INFO, logger=CLIENT_LOGGER):
        pages = by_key_costs(make_client(script), API_KEYS_EPOCH, API_KEYS_EPOCH + dt.timedelta(days=1))
    assert len(script.requests) == 1
    assert [page.by_key for page in pages] == [True]
    assert caplog.records == []


def test_a_refused_window_comes_again_by_project_never_widened(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 naming api_key_id makes the same window come again by project only, with one warning line."""
    script = Script(fail(400, REFUSAL), costs_page(bucket(AFTER_EPOCH, result("4"))))
    end = AFTER_EPOCH + dt.timedelta(days=1)
    with caplog.at_level(logging.INFO, logger=CLIENT_LOGGER):
        pages = by_key_costs(make_client(script), AFTER_EPOCH, end, project_ids=["proj_a"])
    assert len(script.requests) == 2
    assert window(script, 0) == window(script, 1) == (AFTER_EPOCH, end)
    assert script.values(0, "group_by") == ["project_id", "api_key_id"]
    assert script.values(1, "group_by") == ["project_id"]
    assert script.values(1, "project_ids") == ["proj_a"]
    assert [(page.by_key, page.rows) for page in pages] == [
        (False, (CostRow(AFTER_EPOCH, "proj_a", None, Decimal(4), None),))
    ]
    [line] = caplog.records
    assert line.levelno == logging.WARNING
    assert "api_key_id" in line.getMessage()
    assert "come by project only" in line.getMessage()


def test_another_400_is_not_taken_for_a_refusal(make_client: Callable[..., AdminClient]) -> None:
    """A 400 that does not name api_key_id is an error of the request, not a window to fetch by project."""
    script = Script(fail(400, {"message": "Invalid value for limit."}))
    with pytest.raises(OpenAIError, match="Invalid value for limit"):
        by_key_costs(make_client(script), AFTER_EPOCH, AFTER_EPOCH + dt.timedelta(days=1))
    assert len(script.requests) == 1


def test_a_refusal_of_the_fallback_is_not_asked_a_third_time(make_client: Callable[..., AdminClient]) -> None:
    """If the by-project request is refused too, the error surfaces: the window is not asked over and over."""
    script = Script(fail(400, REFUSAL), fail(400, REFUSAL))
    with pytest.raises(OpenAIError, match="api_key_id"):
        by_key_costs(make_client(script), AFTER_EPOCH, AFTER_EPOCH + dt.timedelta(days=1))
    assert len(script.requests) == 2


def api_key(key_id: str, name: str = "Key", owner: str = "Alice") -> dict[str, object]:
    return {
        "object": "organization.project.api_key",
        "id": key_id,
        "name": name,
        "redacted_value": "sk-...x",
        "created_at": 1,
        "owner": {"type": "user", "user": {"id": "user_1", "name": owner}},
    }


def keys_page(*keys: dict[str, object], has_more: bool = False) -> httpx.Response:
    last_id = keys[-1]["id"] if keys else None
    return ok({"object": "list", "data": list(keys), "first_id": None, "last_id": last_id, "has_more": has_more})


def test_list_api_keys_follows_after_cursors(make_client: Callable[..., AdminClient]) -> None:
    """The keys of a project are read across pages through `after` = last_id, each key once."""
    script = Script(
        keys_page(api_key("key_1", "One"), api_key("key_2", "Two"), has_more=True),
        keys_page(api_key("key_2", "Two"), api_key("key_3", "Three"), has_more=True),
        keys_page(api_key("key_4", "Four", owner="Bob")),
    )
    keys = make_client(script).list_api_keys("proj_a")
    assert [request.url.path for request in script.requests] == ["/v1/organization/projects/proj_a/api_keys"] * 3
    assert [script.values(n, "after") for n in range(3)] == [[], ["key_2"], ["key_3"]]
    assert script.values(0, "limit") == ["100"]
    assert sorted(key.id for key in keys) == ["key_1", "key_2", "key_3", "key_4"]
    assert ApiKey("key_4", "Four", "Bob", "user") in keys


def test_list_api_keys_quotes_the_project_id(make_client: Callable[..., AdminClient]) -> None:
    """A project id is one path segment, whatever it holds."""
    script = Script(keys_page())
    assert make_client(script).list_api_keys("proj/../x") == []
    assert script.requests[0].url.raw_path.startswith(b"/v1/organization/projects/proj%2F..%2Fx/api_keys")


@pytest.mark.parametrize(
    ("project_id", "path"),
    [(None, "/v1/organization/spend_limit"), ("proj_x", "/v1/organization/projects/proj_x/spend_limit")],
)
def test_spend_limit_paths(make_client: Callable[..., AdminClient], project_id: str | None, path: str) -> None:
    """The organization's limit and a project's come from their own paths, in USD from cents."""
    body = {"object": "organization.spend_limit", "threshold_amount": 50000, "currency": "USD", "interval": "month"}
    script = Script(ok({**body, "enforcement": {"status": "enforcing"}}))
    assert make_client(script).spend_limit(project_id) == SpendLimit(Decimal("500.00"), "enforcing")
    assert [request.url.path for request in script.requests] == [path]


@pytest.mark.parametrize("reply", [fail(404, "No spend limit"), ok({})], ids=["404", "empty"])
def test_no_spend_limit_is_none_without_retry(make_client: Callable[..., AdminClient], reply: httpx.Response) -> None:
    """A 404 or an empty object means "no limit" at once: one request, no retry."""
    script = Script(reply, reply, reply)
    assert make_client(script).spend_limit("proj_x") is None
    assert len(script.requests) == 1


def test_a_404_elsewhere_is_still_retried(make_client: Callable[..., AdminClient]) -> None:
    """Only the spend limit reads a 404 as "none": the keys listing retries it like the other requests."""
    script = Script(fail(404, "outage"), keys_page(api_key("key_1")))
    assert [key.id for key in make_client(script).list_api_keys("proj_a")] == ["key_1"]
    assert len(script.requests) == 2


def test_a_spend_limit_500_is_retried(make_client: Callable[..., AdminClient]) -> None:
    """A 5xx on the spend limit is retried as any request, and the next answer is used."""
    script = Script(fail(500), ok({"threshold_amount": 100, "currency": "USD"}))
    assert make_client(script).spend_limit(None) == SpendLimit(Decimal(1), "unknown")
    assert len(script.requests) == 2


def test_a_persistent_spend_limit_500_gives_up_after_the_policy_attempts(
    make_client: Callable[..., AdminClient],
) -> None:
    """Outside test mode a 5xx forever is tried as often as the retry policy says, then APIUnavailable."""
    policy = RetryPolicy(attempts=2, timeout=5.0, wait_initial=0.001, wait_max=0.001)
    script = Script(fail(500), fail(500), fail(500))
    with stamina.set_testing(False), pytest.raises(APIUnavailable, match="spend_limit failed after 2 attempts"):
        make_client(script, retry=policy).spend_limit("proj_x")
    assert len(script.requests) == 2


def usage_result(key_id: str | None, **extra: object) -> dict[str, object]:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": 100,
        "output_tokens": 10,
        "num_model_requests": 1,
        "project_id": "proj_a",
        "model": "gpt-4o",
        "api_key_id": key_id,
        **extra,
    }


def usage_page(*results: dict[str, object]) -> httpx.Response:
    start = day_start(AFTER_EPOCH)
    data = [{"object": "bucket", "start_time": start, "end_time": start + 3600, "results": list(results)}]
    return ok({"object": "page", "data": data, "has_more": False, "next_page": None})


def test_usage_by_key_groups_by_key_and_filters_projects(make_client: Callable[..., AdminClient]) -> None:
    """With api_keys the usage request groups by api_key_id, asks only the projects given, and rows carry keys."""
    script = Script(usage_page(usage_result("key_a"), usage_result(None), usage_result("key_a")))
    start = day_start(AFTER_EPOCH)
    pages = list(
        make_client(script).iter_usage("completions", start, start + 3600, api_keys=True, project_ids=["p1", "p2"])
    )
    assert script.requests[0].url.path == "/v1/organization/usage/completions"
    assert script.values(0, "group_by") == ["project_id", "model", "api_key_id"]
    assert script.values(0, "project_ids") == ["p1", "p2"]
    rows = {row.api_key_id: row for page in pages for row in page.rows}
    assert set(rows) == {"key_a", NO_API_KEY}
    assert (rows["key_a"].input_tokens, rows["key_a"].requests) == (200, 2)


def test_usage_without_api_keys_ignores_a_key_sent_anyway(make_client: Callable[..., AdminClient]) -> None:
    """Without api_keys no key grouping is asked and a result's api_key_id is not read: rows of two keys merge."""
    script = Script(usage_page(usage_result("key_a"), usage_result("key_b")))
    start = day_start(AFTER_EPOCH)
    [page] = make_client(script).iter_usage("completions", start, start + 3600)
    assert script.values(0, "group_by") == ["project_id", "model"]
    assert script.values(0, "project_ids") == []
    [row] = page.rows
    assert row.api_key_id is None
    assert row.input_tokens == 200
