"""Tests of the OpenAI Admin API client against in-process fake responses (httpx.MockTransport)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
from prometheus_client import CollectorRegistry
from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks

from openai_cost_exporter import __version__
from openai_cost_exporter.core.errors import APIUnavailable, AuthError, MalformedResponse, OpenAIError, ScopeError
from openai_cost_exporter.core.models import UNATTRIBUTED, CostPage, CostRow, Project, day_start
from openai_cost_exporter.core.redact import redact
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.ingest.usage_stage import UsageStage
from openai_cost_exporter.sources.openai import client as openai_client
from openai_cost_exporter.sources.openai.client import AdminClient, RetryPolicy, build_http_client
from openai_cost_exporter.sources.openai.responses import retry_after_seconds
from openai_cost_exporter.store.state import open_state
from openai_cost_exporter.store.usage_store import UsageStore

KEY = "sk-admin-Zq9TESTKEYdoNotLeak0123456789abcdef"
BASE_URL = "https://openai.test/v1"
DAY = dt.date(2026, 11, 1)
COSTS = "/v1/organization/costs"
PROJECTS = "/v1/organization/projects"

Reply = httpx.Response | Exception
Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """A fake API that answers requests with the given replies in order and records the requests."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def params(self, index: int) -> list[tuple[str, str]]:
        return list(self.requests[index].url.params.multi_items())


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


def ok(body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, json=body, headers=headers)


def fail(status: int, error: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": error} if error is not None else None, headers=headers)


def result(value: object = 1.5, project_id: str | None = "proj_a", **extra: object) -> dict[str, object]:
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


def costs_page(*buckets: dict[str, object], next_page: str | None = None) -> httpx.Response:
    has_more = next_page is not None
    return ok({"object": "page", "data": list(buckets), "has_more": has_more, "next_page": next_page})


def projects_page(*projects: dict[str, object], has_more: bool = False, **extra: object) -> httpx.Response:
    last_id = projects[-1]["id"] if projects else None
    body = {"object": "list", "data": list(projects), "last_id": last_id, "has_more": has_more, **extra}
    return ok(body)


def project(project_id: str, name: str | None = "Name", **extra: object) -> dict[str, object]:
    return {"id": project_id, "object": "organization.project", "name": name, "created_at": 1, **extra}


def costs(client: AdminClient, *, line_items: bool = False) -> list[CostPage]:
    return list(client.iter_costs(DAY, DAY + dt.timedelta(days=2), line_items=line_items))


def rows(client: AdminClient, *, line_items: bool = False) -> list[CostRow]:
    return [row for page in costs(client, line_items=line_items) for row in page.rows]


# --- the HTTP client and the query on the wire ---------------------------------------------------------


@pytest.mark.parametrize("base_url", ["https://openai.test/v1", "https://openai.test/v1/"])
def test_build_http_client_sends_auth_user_agent_and_joins_paths(base_url: str) -> None:
    """The client sends the bearer key and our User-Agent to <base_url>/organization/costs."""
    script = Script(costs_page())
    with build_http_client(base_url, KEY, transport=httpx.MockTransport(script)) as http:
        list(AdminClient(http).iter_costs(DAY, DAY + dt.timedelta(days=1)))
    request = script.requests[0]
    assert request.url.path == COSTS
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["User-Agent"] == f"openai-cost-exporter/{__version__}"


@pytest.mark.parametrize(("line_items", "group_by"), [(False, ["project_id"]), (True, ["project_id", "line_item"])])
def test_costs_query_uses_utc_midnights_repeated_group_by_and_limit(
    make_client: Callable[..., AdminClient], line_items: bool, group_by: list[str]
) -> None:
    """iter_costs sends start/end at 00:00 UTC, bucket_width=1d, group_by as repeated keys and the limit."""
    script = Script(costs_page())
    client = make_client(script)
    list(client.iter_costs(dt.date(2026, 11, 1), dt.date(2026, 11, 8), line_items=line_items, limit=31))
    params = script.params(0)
    assert ("start_time", "1793491200") in params  # 2026-11-01T00:00:00Z
    assert ("end_time", "1794096000") in params  # 2026-11-08T00:00:00Z
    assert ("bucket_width", "1d") in params
    assert [value for key, value in params if key == "group_by"] == group_by
    assert ("limit", "31") in params
    assert "page" not in dict(params)


@pytest.mark.parametrize(
    ("start", "end", "limit"),
    [
        (DAY, DAY, 180),
        (DAY, DAY - dt.timedelta(days=1), 180),
        (DAY, DAY + dt.timedelta(1), 0),
        (DAY, DAY, 181),
    ],
)
def test_costs_rejects_empty_ranges_and_bad_limits(
    make_client: Callable[..., AdminClient], start: dt.date, end: dt.date, limit: int
) -> None:
    """An empty date range or a limit outside 1..180 raises ValueError at the call, before any request."""
    script = Script()
    with pytest.raises(ValueError, match=r"limit|after"):
        make_client(script).iter_costs(start, end, limit=limit)
    assert script.requests == []


# --- pagination ------------------------------------------------------------------------------------------


def test_costs_follows_next_page_until_has_more_is_false(make_client: Callable[..., AdminClient]) -> None:
    """Three pages are fetched with page=<next_page>, the other parameters unchanged, one CostPage each."""
    script = Script(
        costs_page(bucket(DAY, result(1)), next_page="page_A"),
        costs_page(bucket(DAY + dt.timedelta(1), result(2)), next_page="page_B"),
        costs_page(bucket(DAY + dt.timedelta(2), result(3))),
    )
    pages = costs(make_client(script))
    assert [page.days for page in pages] == [(DAY,), (DAY + dt.timedelta(1),), (DAY + dt.timedelta(2),)]
    assert [row.amount_usd for page in pages for row in page.rows] == [1, 2, 3]
    assert [dict(script.params(n)).get("page") for n in range(3)] == [None, "page_A", "page_B"]
    assert [item for item in script.params(2) if item[0] != "page"] == script.params(0)


def test_costs_pages_are_streamed(make_client: Callable[..., AdminClient]) -> None:
    """The first page is yielded before the second one is requested."""
    script = Script(costs_page(bucket(DAY), next_page="page_A"), costs_page(bucket(DAY)))
    pages = make_client(script).iter_costs(DAY, DAY + dt.timedelta(days=2))
    next(pages)
    assert len(script.requests) == 1
    assert list(pages) == [CostPage(days=(DAY,), rows=())]
    assert len(script.requests) == 2


@pytest.mark.parametrize("cursor", [None, ""])
def test_costs_stops_with_a_warning_when_has_more_has_no_cursor(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture, cursor: str | None
) -> None:
    """has_more=true with a null or empty next_page ends the listing with a warning instead of looping."""
    body = {"data": [bucket(DAY, result(1))], "has_more": True, "next_page": cursor}
    script = Script(ok(body))
    with caplog.at_level(logging.WARNING, logger="openai_cost_exporter.sources.openai.client"):
        assert len(rows(make_client(script))) == 1
    assert len(script.requests) == 1
    assert "has_more is true but no cursor" in caplog.text


def test_costs_repeated_cursor_is_malformed(make_client: Callable[..., AdminClient]) -> None:
    """A cursor that comes back a second time raises MalformedResponse instead of looping forever."""
    script = Script(
        costs_page(bucket(DAY), next_page="page_A"),
        costs_page(bucket(DAY), next_page="page_B"),
        costs_page(bucket(DAY), next_page="page_A"),
    )
    with pytest.raises(MalformedResponse, match=r"/organization/costs page 3: cursor 'page_A'"):
        costs(make_client(script))


def test_costs_page_count_is_capped(make_client: Callable[..., AdminClient], monkeypatch: pytest.MonkeyPatch) -> None:
    """A listing that never ends stops at MAX_PAGES with MalformedResponse."""
    monkeypatch.setattr(openai_client, "MAX_PAGES", 5)
    script = Script(*(costs_page(bucket(DAY), next_page=f"page_{n}") for n in range(6)))
    with pytest.raises(MalformedResponse, match="still has_more after 5 pages"):
        costs(make_client(script))
    assert len(script.requests) == 5


def test_projects_query_and_pagination(make_client: Callable[..., AdminClient]) -> None:
    """list_projects asks for 100 per page with archived ones and pages with after=<last_id>."""
    script = Script(
        projects_page(project("proj_1"), has_more=True),
        projects_page(project("proj_2"), project("proj_3"), has_more=True),
        projects_page(project("proj_4")),
    )
    projects = make_client(script).list_projects()
    assert [p.id for p in projects] == ["proj_1", "proj_2", "proj_3", "proj_4"]
    assert script.params(0) == [("limit", "100"), ("include_archived", "true")]
    assert [dict(script.params(n)).get("after") for n in range(3)] == [None, "proj_1", "proj_3"]
    assert script.requests[0].url.path == PROJECTS


def test_projects_fall_back_to_the_last_item_id_without_last_id(
    make_client: Callable[..., AdminClient],
) -> None:
    """A page without last_id continues after the id of its last project."""
    script = Script(
        projects_page(project("proj_1"), project("proj_2"), has_more=True, last_id=None),
        projects_page(project("proj_3")),
    )
    assert len(make_client(script).list_projects()) == 3
    assert dict(script.params(1))["after"] == "proj_2"


def test_projects_stop_with_a_warning_without_any_cursor(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture
) -> None:
    """has_more=true on an empty page with no last_id ends the listing with a warning."""
    script = Script(projects_page(has_more=True))
    with caplog.at_level(logging.WARNING):
        assert make_client(script).list_projects() == []
    assert "no cursor" in caplog.text


def test_projects_repeated_cursor_is_malformed(make_client: Callable[..., AdminClient]) -> None:
    """A server that ignores `after` and repeats a page raises MalformedResponse."""
    script = Script(projects_page(project("proj_1"), has_more=True), projects_page(project("proj_1"), has_more=True))
    with pytest.raises(MalformedResponse, match="/organization/projects page 2"):
        make_client(script).list_projects()


# --- parsing ---------------------------------------------------------------------------------------------


BIG = "1234567.89012345678901234567890123456789"  # 39 digits


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ({"value": 3, "currency": "usd"}, Decimal(3)),
        ({"value": 0.1, "currency": "usd"}, Decimal("0.1")),
        ({"value": 1e-7, "currency": "usd"}, Decimal("1E-7")),
        ({"value": "1.23", "currency": "usd"}, Decimal("1.23")),
        ({"value": "0E-6176", "currency": "usd"}, Decimal(0)),
        ({"value": "-0.00", "currency": "usd"}, Decimal(0)),
        ({"value": BIG, "currency": "usd"}, Decimal(BIG)),
        ({"value": 2, "currency": "USD"}, Decimal(2)),
        ({"value": None, "currency": "usd"}, Decimal(0)),
        ({"currency": "usd"}, Decimal(0)),
        (None, Decimal(0)),
    ],
)
def test_amount_values_become_exact_decimals(
    make_client: Callable[..., AdminClient], amount: object, expected: Decimal
) -> None:
    """amount.value as int, float, string, scientific, 39 digits, null or missing is the exact Decimal."""
    script = Script(costs_page(bucket(DAY, {"project_id": "proj_a", "amount": amount})))
    [row] = rows(make_client(script))
    assert row.amount_usd == expected
    assert str(row.amount_usd) == str(expected)


def test_missing_amount_is_logged_at_debug(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture
) -> None:
    """A result without an amount counts as 0 and says so in a debug log line."""
    script = Script(costs_page(bucket(DAY, {"project_id": "proj_a"})))
    with caplog.at_level(logging.DEBUG, logger="openai_cost_exporter.sources.openai.responses"):
        rows(make_client(script))
    assert "page 1, bucket 0, result 0: no amount" in caplog.text


@pytest.mark.parametrize("project_id", [None, ""])
def test_null_project_id_is_unattributed(make_client: Callable[..., AdminClient], project_id: str | None) -> None:
    """A null or empty project_id is reported under UNATTRIBUTED."""
    [row] = rows(make_client(Script(costs_page(bucket(DAY, result(1, project_id))))))
    assert row.project_id == UNATTRIBUTED


def test_rows_carry_day_project_and_line_item_and_ignore_unknown_fields(
    make_client: Callable[..., AdminClient],
) -> None:
    """Rows take the UTC day of start_time, keep line items when grouped and ignore undocumented keys."""
    extra = {"organization_id": "org_x", "project_name": "Alpha", "user_email": "a@b.c", "quantity": 3}
    item = {**result("0.25", line_item="gpt-4o-mini-2024-07-18, input"), **extra}
    raw_bucket = {**bucket(DAY, item), "start_time_iso": "2026-11-01T00:00:00"}
    [row] = rows(make_client(Script(costs_page(raw_bucket))), line_items=True)
    assert row == CostRow(DAY, "proj_a", "gpt-4o-mini-2024-07-18, input", Decimal("0.25"))


def test_line_items_are_dropped_and_summed_when_not_grouped(make_client: Callable[..., AdminClient]) -> None:
    """Without line_items, filled line_item fields are ignored and the project's rows are summed (§1.4)."""
    script = Script(costs_page(bucket(DAY, result("1.5", line_item="a, input"), result(2, line_item="a, out"))))
    assert rows(make_client(script)) == [CostRow(DAY, "proj_a", None, Decimal("3.5"))]


def test_duplicate_keys_in_a_bucket_are_summed_exactly(make_client: Callable[..., AdminClient]) -> None:
    """Results with the same key in one bucket are added without rounding; other keys stay separate."""
    tiny = "0.000000000000000000000000000000000001"
    script = Script(
        costs_page(
            bucket(DAY, result(BIG), result(tiny), result(1, "proj_b")),
            bucket(DAY + dt.timedelta(1), result(BIG)),
        )
    )
    found = rows(make_client(script))
    exact_sum = Decimal("1234567.890123456789012345678901234567890001")
    assert found == [
        CostRow(DAY, "proj_a", None, exact_sum),
        CostRow(DAY, "proj_b", None, Decimal(1)),
        CostRow(DAY + dt.timedelta(1), "proj_a", None, Decimal(BIG)),
    ]


def test_empty_buckets_keep_their_day(make_client: Callable[..., AdminClient]) -> None:
    """A bucket without results still lists its day, so the caller can write a 0."""
    [page] = costs(make_client(Script(costs_page(bucket(DAY), bucket(DAY + dt.timedelta(1), result(1))))))
    assert page.days == (DAY, DAY + dt.timedelta(1))
    assert len(page.rows) == 1


@pytest.mark.parametrize("currency", ["eur", "", None, 5])
def test_non_usd_currency_is_malformed(make_client: Callable[..., AdminClient], currency: object) -> None:
    """Only usd amounts are accepted; any other or missing currency raises MalformedResponse."""
    script = Script(costs_page(bucket(DAY, {"amount": {"value": 1, "currency": currency}})))
    with pytest.raises(MalformedResponse, match="page 1, bucket 0, result 0: currency"):
        rows(make_client(script))


FIVE_THOUSAND_DIGITS = "9" * 5000


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (5, "amount is 5, not an object"),
        ({"value": "abc", "currency": "usd"}, "amount.value 'abc' is not a number"),
        ({"value": "NaN", "currency": "usd"}, "amount.value 'NaN' is not finite"),
        ({"value": "-Infinity", "currency": "usd"}, "amount.value '-Infinity' is not finite"),
        ({"value": True, "currency": "usd"}, "amount.value is True, not a number"),
        ({"value": [1], "currency": "usd"}, r"amount.value is \[1\], not a number"),
        ({"value": "1e30", "currency": "usd"}, "amount.value '1e30' is out of range"),
        ({"value": 1e30, "currency": "usd"}, "amount.value 1e\\+30 is out of range"),
        ({"value": "-1e13", "currency": "usd"}, "amount.value '-1e13' is out of range"),
        ({"value": "1e309", "currency": "usd"}, "amount.value '1e309' is out of range"),
        ({"value": "1e999999999", "currency": "usd"}, "amount.value '1e999999999' is out of range"),
        ({"value": "1e-999999999", "currency": "usd"}, "amount.value '1e-999999999' is out of range"),
        ({"value": FIVE_THOUSAND_DIGITS, "currency": "usd"}, r"\(5002 characters\) has more than 60 digits"),
        ({"value": "0." + FIVE_THOUSAND_DIGITS, "currency": "usd"}, "has more than 60 digits"),
    ],
)
def test_a_result_with_a_bad_amount_is_rejected_alone(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture, amount: object, reason: str
) -> None:
    """An unparsable, non-finite or absurd amount drops its result with one warning naming project and day."""
    script = Script(costs_page(bucket(DAY, result("2.5", "proj_ok"), {"project_id": "proj_bad", "amount": amount})))
    with caplog.at_level(logging.WARNING, logger="openai_cost_exporter.sources.openai.responses"):
        [page] = costs(make_client(script))
    assert page == CostPage(days=(DAY,), rows=(CostRow(DAY, "proj_ok", None, Decimal("2.5")),), rejected=1)
    [line] = caplog.messages
    assert "page 1, bucket 0, result 1: cost of project 'proj_bad' on 2026-11-01 rejected: " in line
    assert re.search(reason, line), line
    assert len(line) < 300


def test_an_infinite_json_number_is_rejected(make_client: Callable[..., AdminClient]) -> None:
    """A JSON number beyond float range (decoded as inf) is a rejected result, not a failed page."""
    body = json.dumps({"data": [bucket(DAY, result(1e400), result(1, "proj_b"))]}, allow_nan=True)
    [page] = costs(make_client(Script(httpx.Response(200, text=body))))
    assert page.rows == (CostRow(DAY, "proj_b", None, Decimal(1)),)
    assert page.rejected == 1


@pytest.mark.parametrize("value", ["-0.25", "-999999999999", "999999999999.99", "1E-7", BIG])
def test_credits_and_large_but_plausible_amounts_are_kept(make_client: Callable[..., AdminClient], value: str) -> None:
    """Negative credits and amounts up to the bound are counted as sent."""
    [page] = costs(make_client(Script(costs_page(bucket(DAY, result(value))))))
    assert page.rows == (CostRow(DAY, "proj_a", None, Decimal(value)),)
    assert page.rejected == 0


def test_rejects_are_counted_per_page(make_client: Callable[..., AdminClient]) -> None:
    """Each page reports how many of its results were rejected, across its buckets."""
    first = costs_page(
        bucket(DAY, result("1e30"), result("x")), bucket(DAY + dt.timedelta(1), result("nan")), next_page="p2"
    )
    second = costs_page(bucket(DAY + dt.timedelta(2), result(1)))
    pages = costs(make_client(Script(first, second)))
    assert [page.rejected for page in pages] == [3, 0]
    assert pages[0].days == (DAY, DAY + dt.timedelta(1))


def test_a_repeated_day_is_counted_once(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture
) -> None:
    """The same day's bucket twice on a page keeps the first, with one warning, instead of doubling the day."""
    script = Script(costs_page(bucket(DAY, result(1)), bucket(DAY + dt.timedelta(1)), bucket(DAY, result(1))))
    with caplog.at_level(logging.WARNING, logger="openai_cost_exporter.sources.openai.responses"):
        [page] = costs(make_client(script))
    assert page == CostPage(days=(DAY, DAY + dt.timedelta(1)), rows=(CostRow(DAY, "proj_a", None, Decimal(1)),))
    assert caplog.messages == [
        "GET /organization/costs page 1, bucket 2: 2026-11-01 repeats an earlier bucket of the page; ignored"
    ]


def test_lone_surrogates_in_ids_and_line_items_are_replaced(make_client: Callable[..., AdminClient]) -> None:
    """A lone surrogate in a project id or line item (JSON "\\ud800") becomes U+FFFD, so it can be stored."""
    item = result(1, "proj_\ud800", line_item="gpt-4o, \udfffinput")
    body = json.dumps({"data": [bucket(DAY, item)], "has_more": False})
    assert "\\ud800" in body
    [row] = rows(make_client(Script(httpx.Response(200, text=body))), line_items=True)
    assert row == CostRow(DAY, "proj_\ufffd", "gpt-4o, \ufffdinput", Decimal(1))
    row.project_id.encode("utf-8")


def test_lone_surrogates_in_project_names_are_replaced(make_client: Callable[..., AdminClient]) -> None:
    """A project name or id with a lone surrogate is read with U+FFFD instead."""
    body = json.dumps({"data": [project("proj_\ud800", "R\udc00D")], "has_more": False})
    assert "\\udc00" in body
    assert make_client(Script(httpx.Response(200, text=body))).list_projects() == [Project("proj_\ufffd", "R\ufffdD")]


def test_a_start_time_out_of_range_is_malformed(make_client: Callable[..., AdminClient]) -> None:
    """A bucket starting in the year 33715 raises MalformedResponse, not a ValueError from datetime."""
    script = Script(costs_page({"object": "bucket", "start_time": 10**12, "end_time": 10**12 + 86400, "results": []}))
    with pytest.raises(MalformedResponse, match="bucket 0: start_time 1000000000000 is out of range"):
        costs(make_client(script))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"has_more": False}, "page 1: `data` is NoneType"),
        ({"data": {}, "has_more": False}, "page 1: `data` is dict"),
        ({"data": ["x"]}, "bucket 0: expected an object"),
        ({"data": [{"results": []}]}, "bucket 0: start_time is None"),
        ({"data": [{"start_time": "1", "results": []}]}, "start_time is '1'"),
        ({"data": [{"start_time": True, "results": []}]}, "start_time is True"),
        ({"data": [{"start_time": 0, "results": {}}]}, "bucket 0: `results` is dict"),
        ({"data": [{"start_time": 0, "results": [7]}]}, "result 0: expected an object"),
        ({"data": [bucket(DAY, result(1, project_id=7))]}, "project_id is 7"),  # type: ignore[arg-type]
        ({"data": [], "has_more": "yes"}, "page 1: has_more is 'yes'"),
        ([1, 2], "the body is a list"),
    ],
)
def test_costs_shape_errors_are_malformed_and_name_the_page(
    make_client: Callable[..., AdminClient], body: object, match: str
) -> None:
    """A body not shaped like the schema raises MalformedResponse naming endpoint and page, not a KeyError."""
    script = Script(httpx.Response(200, text=body) if isinstance(body, str) else ok(body))
    with pytest.raises(MalformedResponse, match=match) as caught:
        costs(make_client(script))
    assert "/organization/costs" in str(caught.value)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (project("proj_a", "Alpha"), Project("proj_a", "Alpha", archived=False)),
        (project("proj_a", None), Project("proj_a", "proj_a", archived=False)),
        (project("proj_a", "Old", archived_at=1700000000), Project("proj_a", "Old", archived=True)),
        (project("proj_a", "Old", status="archived"), Project("proj_a", "Old", archived=True)),
        (project("proj_a", "A", status="active", archived_at=None, residency={}), Project("proj_a", "A")),
    ],
)
def test_projects_are_parsed(
    make_client: Callable[..., AdminClient], item: dict[str, object], expected: Project
) -> None:
    """A null name falls back to the id; archived_at or status=archived marks a project archived."""
    assert make_client(Script(projects_page(item))).list_projects() == [expected]


@pytest.mark.parametrize(
    ("body", "match"),
    [({"has_more": False}, "`data` is NoneType"), ({"data": [{"name": "x"}]}, "project 0: id is None")],
)
def test_projects_shape_errors_are_malformed(make_client: Callable[..., AdminClient], body: object, match: str) -> None:
    """A projects body without data or ids raises MalformedResponse naming the endpoint and page."""
    with pytest.raises(MalformedResponse, match=f"/organization/projects page 1.*{match}"):
        make_client(Script(ok(body))).list_projects()


# --- failures and retries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        {
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        },
        "Incorrect API key provided.",
    ],
)
def test_401_is_an_auth_error_without_retry(make_client: Callable[..., AdminClient], error: object) -> None:
    """HTTP 401 (error object or bare string) raises AuthError quoting the server, after one request."""
    script = Script(fail(401, error))
    with pytest.raises(AuthError, match=r"rejected the admin key \(HTTP 401: Incorrect API key provided\.\)"):
        costs(make_client(script))
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "error",
    [
        {"message": "Missing scopes: api.usage.read.", "type": "insufficient_permissions", "code": None},
        "Missing scopes: api.usage.read.",
    ],
)
def test_403_is_a_scope_error_naming_the_scope(make_client: Callable[..., AdminClient], error: object) -> None:
    """HTTP 403 raises ScopeError (an AuthError) naming the api.usage.read scope and the sk-admin- key kind,
    without retry."""
    script = Script(fail(403, error))
    with pytest.raises(ScopeError) as caught:
        make_client(script).list_projects()
    message = str(caught.value)
    assert "HTTP 403: Missing scopes: api.usage.read." in message
    assert "lacks permission" in message
    assert "sk-admin-..." in message
    assert len(script.requests) == 1


def test_401_is_not_a_scope_error(make_client: Callable[..., AdminClient]) -> None:
    """HTTP 401 (the key rejected for every endpoint) is an AuthError but not a ScopeError."""
    with pytest.raises(AuthError) as caught:
        costs(make_client(Script(fail(401, "Incorrect API key provided."))))
    assert not isinstance(caught.value, ScopeError)


@pytest.mark.parametrize(("status", "quiet"), [(403, True), (401, False)])
def test_usage_stage_degrades_only_on_a_missing_scope(
    make_client: Callable[..., AdminClient], tmp_path: Path, status: int, quiet: bool
) -> None:
    """The usage stage says once and then only counts a 403 on the usage endpoints (billed figures go on), while a
    401 fails it like any other error, logged by the cycle each time."""
    conn = open_state(tmp_path / "state.sqlite3")
    try:
        client = make_client(lambda _request: fail(status, "no"))
        stage = UsageStage(client, UsageStore(conn), PriceBook(), SelfMetrics(CollectorRegistry()), history_days=1)
        with pytest.raises(AuthError) as caught:
            stage.estimate(dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC))
    finally:
        conn.close()
    assert isinstance(caught.value, ScopeError) is quiet
    assert getattr(caught.value, "reported", False) is quiet


def test_persistent_404_names_the_url_and_hints_at_v1(make_client: Callable[..., AdminClient]) -> None:
    """A 404 on every attempt (a base URL without /v1, say) is still retried, then names the URL asked, without its
    query, and hints that the base URL usually ends in /v1."""
    script = Script(*(fail(404, "Invalid URL (GET /organization/costs)") for _ in range(3)))
    with pytest.raises(APIUnavailable) as caught:
        costs(make_client(script))
    assert len(script.requests) == 3
    assert str(caught.value) == (
        "GET /organization/costs failed after 3 attempts: HTTP 404: Invalid URL (GET /organization/costs)"
        f" from https://openai.test{COSTS} (is --base-url right? it usually ends in /v1, e.g. https://api.openai.com/v1)"
    )


def test_400_is_an_openai_error_without_retry(make_client: Callable[..., AdminClient]) -> None:
    """HTTP 400 raises a plain OpenAIError with the server message and is not retried."""
    script = Script(fail(400, {"message": "Invalid value for limit.", "type": "invalid_request_error"}))
    with pytest.raises(OpenAIError, match=r"HTTP 400: Invalid value for limit\.") as caught:
        costs(make_client(script))
    assert type(caught.value) is OpenAIError
    assert len(script.requests) == 1


def test_error_without_json_quotes_the_text(make_client: Callable[..., AdminClient]) -> None:
    """A non-JSON error body (a proxy's HTML page) is quoted as text, shortened."""
    script = Script(*(httpx.Response(502, text="<html>Bad gateway" + "x" * 1000) for _ in range(3)))
    with pytest.raises(APIUnavailable, match="HTTP 502: <html>Bad gateway") as caught:
        costs(make_client(script))
    assert len(str(caught.value)) < 500


@pytest.mark.parametrize("status", [500, 502, 503, 504, 404, 408])
def test_transient_statuses_are_retried(make_client: Callable[..., AdminClient], status: int) -> None:
    """5xx, 404 (the documented costs outage) and 408 are retried and the next success is used."""
    script = Script(fail(status, "busy"), costs_page(bucket(DAY, result(1))))
    assert len(rows(make_client(script))) == 1
    assert len(script.requests) == 2


def test_persistent_5xx_raises_api_unavailable(make_client: Callable[..., AdminClient]) -> None:
    """A 503 on every attempt raises APIUnavailable after the test-mode budget of 3 attempts."""
    script = Script(*(fail(503, {"message": "Service Unavailable"}) for _ in range(3)))
    with pytest.raises(APIUnavailable) as caught:
        costs(make_client(script))
    expected = "GET /organization/costs failed after 3 attempts: HTTP 503: Service Unavailable"
    assert str(caught.value) == expected
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.DecodingError("bad gzip"),
    ],
)
def test_transport_failures_are_retried(make_client: Callable[..., AdminClient], failure: Exception) -> None:
    """Timeouts, refused and reset connections and undecodable bodies are retried."""
    script = Script(failure, costs_page(bucket(DAY, result(1))))
    assert len(rows(make_client(script))) == 1
    assert len(script.requests) == 2


def test_other_request_errors_are_not_retried(make_client: Callable[..., AdminClient]) -> None:
    """A request error that is no transport failure (e.g. too many redirects) raises OpenAIError at once."""
    script = Script(httpx.TooManyRedirects("loop"))
    with pytest.raises(OpenAIError, match="TooManyRedirects: loop"):
        costs(make_client(script))
    assert len(script.requests) == 1


def test_truncated_json_is_retried(make_client: Callable[..., AdminClient]) -> None:
    """A 200 with a cut-off JSON body is retried and the next good page is used."""
    script = Script(httpx.Response(200, text='{"data": [{"start_ti'), costs_page(bucket(DAY, result(1))))
    assert len(rows(make_client(script))) == 1


def test_invalid_json_forever_is_malformed(make_client: Callable[..., AdminClient]) -> None:
    """A body that is never valid JSON raises MalformedResponse after the retry budget."""
    script = Script(*(httpx.Response(200, text="<html>login</html>") for _ in range(3)))
    with pytest.raises(MalformedResponse, match="failed after 3 attempts: HTTP 200 with invalid JSON"):
        make_client(script).list_projects()


def test_429_with_retry_after_then_success(make_client: Callable[..., AdminClient]) -> None:
    """A 429 with Retry-After is retried and the following success is used."""
    script = Script(fail(429, "slow down", {"Retry-After": "2"}), costs_page(bucket(DAY, result(1))))
    assert len(rows(make_client(script))) == 1
    assert len(script.requests) == 2


def test_retry_after_is_the_wait_outside_test_mode(make_client: Callable[..., AdminClient]) -> None:
    """With test mode off, stamina waits what Retry-After says instead of its own back-off."""
    waits: list[float] = []
    old_hooks = get_on_retry_hooks()
    set_on_retry_hooks([lambda details: waits.append(details.wait_for)])
    policy = RetryPolicy(attempts=2, timeout=5.0, wait_initial=3.0, wait_max=3.0)
    script = Script(fail(429, "slow down", {"Retry-After": "0.01"}), costs_page(bucket(DAY, result(1))))
    try:
        with stamina.set_testing(False):
            assert len(rows(make_client(script, retry=policy))) == 1
    finally:
        set_on_retry_hooks(old_hooks)
    assert waits == [pytest.approx(0.01)]


def test_retry_after_beyond_the_budget_gives_up(make_client: Callable[..., AdminClient]) -> None:
    """A Retry-After longer than the whole request budget raises APIUnavailable without waiting."""
    script = Script(fail(429, "quota", {"Retry-After": "3600"}))
    with pytest.raises(APIUnavailable, match=r"after 1 attempts: HTTP 429: quota \(Retry-After 3600 s\)"):
        costs(make_client(script, retry=RetryPolicy(timeout=60)))


def test_retry_policy_attempts_apply_outside_test_mode(make_client: Callable[..., AdminClient]) -> None:
    """Outside test mode the policy's attempt count is the budget."""
    records: list[RetryDetails] = []

    def record(details: RetryDetails) -> None:  # not `records.append`: a RetryHook takes `details` by name
        records.append(details)

    old_hooks = get_on_retry_hooks()
    set_on_retry_hooks([record])
    policy = RetryPolicy(attempts=2, timeout=5.0, wait_initial=0.001, wait_max=0.001)
    script = Script(fail(500, "x"), fail(500, "x"))
    try:
        with stamina.set_testing(False), pytest.raises(APIUnavailable, match="after 2 attempts"):
            costs(make_client(script, retry=policy))
    finally:
        set_on_retry_hooks(old_hooks)
    assert len(records) == 1


NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "5"}, 5.0),
        ({"Retry-After": " 0 "}, 0.0),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "inf"}, 3600.0),  # capped: a wait no server may impose
        ({"Retry-After": "1e12"}, 3600.0),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "Sat, 28 Nov 2026 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Sat, 28 Nov 2026 11:00:00 GMT"}, 0.0),
        ({"Retry-After": "Sat, 28 Nov 2026 12:01:00 GMT", "Date": "Sat, 28 Nov 2026 12:00:50 GMT"}, 10.0),
        ({"Retry-After": "Sat, 28 Nov 2026 12:00:20 -0000"}, 20.0),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After is read as seconds or as an HTTP date (relative to Date when present); junk is None."""
    assert retry_after_seconds(httpx.Response(429, headers=headers), now=NOW) == expected


# --- secrets, metrics, threads ---------------------------------------------------------------------------


ECHO = f"Incorrect API key provided: {KEY}. Also sk-proj-abc123def456 and sk-admi********cdef."


@pytest.mark.parametrize(
    ("replies", "error"),
    [
        ([fail(401, {"message": ECHO})], AuthError),
        ([fail(403, ECHO)], AuthError),
        ([fail(400, {"message": ECHO})], OpenAIError),
        ([fail(503, ECHO) for _ in range(3)], APIUnavailable),
        ([fail(429, ECHO) for _ in range(3)], APIUnavailable),
        ([httpx.ConnectError(ECHO) for _ in range(3)], APIUnavailable),
        ([httpx.TooManyRedirects(ECHO)], OpenAIError),
    ],
)
def test_the_key_never_leaks_into_errors_or_logs(
    make_client: Callable[..., AdminClient],
    caplog: pytest.LogCaptureFixture,
    replies: list[Reply],
    error: type[Exception],
) -> None:
    """Even when the server echoes the key, no exception text, repr or log record contains it."""
    client = make_client(Script(*replies))
    with caplog.at_level(logging.DEBUG), pytest.raises(error) as caught:
        costs(client)
    texts = [repr(client), str(caught.value), repr(caught.value), caplog.text]
    cause: BaseException | None = caught.value
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__
    texts += [json.dumps(record.__dict__, default=repr) for record in caplog.records]
    for text in texts:
        assert KEY not in text
        assert "abc123def456" not in text
        assert "********cdef" not in text  # OpenAI's own partly starred echo of the key
    assert "sk-***" in str(caught.value)


def test_repr_shows_no_key(make_client: Callable[..., AdminClient]) -> None:
    """repr(AdminClient) shows the base URL and policy but not the admin key."""
    text = repr(make_client(Script()))
    assert KEY not in text
    assert "openai.test" in text


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("key sk-admin-AAAA1234 here", (), "key sk-*** here"),
        ("token hunter2hunter2 here", ("hunter2hunter2",), "token *** here"),
        ("short abc stays", ("abc",), "short abc stays"),
        ("nothing secret", ("", "sk-x"), "nothing secret"),
    ],
)
def test_redact(text: str, secrets: tuple[str, ...], expected: str) -> None:
    """redact masks given secrets (long enough to be real) and anything shaped like an OpenAI key."""
    assert redact(text, *secrets) == expected


def test_every_attempt_is_counted(make_client: Callable[..., AdminClient]) -> None:
    """api_requests counts each attempt by endpoint and HTTP status or failure kind."""
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    script = Script(
        fail(429, "slow"),
        httpx.ReadTimeout("slow"),
        costs_page(bucket(DAY), next_page="page_A"),
        httpx.ConnectError("refused"),
        httpx.Response(200, text="{"),
        costs_page(bucket(DAY)),
        fail(503, "down"),
        projects_page(project("proj_a")),
    )
    client = make_client(script, on_request=metrics.count_request)
    costs(client)
    client.list_projects()

    def count(endpoint: str, status: str) -> float | None:
        name = "openai_cost_exporter_api_requests_total"
        return registry.get_sample_value(name, {"endpoint": endpoint, "status": status})

    assert count("costs", "429") == 1
    assert count("costs", "timeout") == 1
    assert count("costs", "connect_error") == 1
    assert count("costs", "invalid_json") == 1
    assert count("costs", "200") == 2
    assert count("projects", "503") == 1
    assert count("projects", "200") == 1
    assert count("projects", "429") is None


def test_costs_and_projects_can_run_concurrently(make_client: Callable[..., AdminClient]) -> None:
    """iter_costs and list_projects on one client in two threads both complete with their own data."""
    both_in_flight = threading.Barrier(2, timeout=5)
    cost_calls: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = request.url.params.get("page") or request.url.params.get("after")
        if page is None:
            both_in_flight.wait()  # proves the two first requests overlap
        if request.url.path == PROJECTS:
            cursor = int(page or "0")
            return projects_page(project(str(cursor + 1)), has_more=cursor < 4)
        cost_calls.append(page)
        follow = None if page == "page_5" else f"page_{len(cost_calls)}"
        return costs_page(bucket(DAY, result(1)), next_page=follow)

    client = make_client(handler)
    found_costs: list[CostRow] = []
    found_projects: list[Project] = []
    threads = [
        threading.Thread(target=lambda: found_costs.extend(rows(client))),
        threading.Thread(target=lambda: found_projects.extend(client.list_projects())),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(found_costs) == 6
    assert [p.id for p in found_projects] == ["1", "2", "3", "4", "5"]


def test_each_retry_is_one_line_naming_path_attempt_wait_and_error(
    make_client: Callable[..., AdminClient], caplog: pytest.LogCaptureFixture
) -> None:
    """Every retry logs one warning with the path, the attempt number, the wait and the failed attempt's error, and
    never the admin key, even when the server echoes it."""
    script = Script(fail(503, f"busy, key {KEY}"), fail(429, "slow down"), costs_page(bucket(DAY, result(1))))
    with caplog.at_level(logging.WARNING, logger="openai_cost_exporter.sources.openai.client"):
        assert len(rows(make_client(script))) == 1
    lines = [
        record.getMessage() for record in caplog.records if record.name == "openai_cost_exporter.sources.openai.client"
    ]
    assert len(lines) == 2, lines
    first, second = lines
    assert first.startswith("GET /organization/costs: attempt 2 after ") and " s wait " in first
    assert "attempt 1 failed: HTTP 503: busy" in first
    assert second.startswith("GET /organization/costs: attempt 3 after ") and "attempt 2 failed: HTTP 429" in second
    assert all(KEY not in line for line in lines)


def test_an_integer_beyond_int_limits_rejects_its_row_not_the_page(make_client: Callable[..., AdminClient]) -> None:
    """A 5,000-digit integer amount (past Python's 4,300-digit int limit) drops only its row, with no retry, where
    it used to make the page invalid JSON and be retried until MalformedResponse."""
    page = {"object": "page", "data": [bucket(DAY, result(1, "proj_ok"), result(0, "proj_huge"))], "has_more": False}
    text = json.dumps(page).replace('"value": 0,', '"value": ' + "9" * 5000 + ",")
    script = Script(httpx.Response(200, content=text.encode(), headers={"Content-Type": "application/json"}))
    [cost_page] = costs(make_client(script))
    assert [(row.project_id, row.amount_usd) for row in cost_page.rows] == [("proj_ok", Decimal(1))]
    assert cost_page.rejected == 1 and len(script.requests) == 1
