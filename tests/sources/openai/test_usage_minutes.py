"""Tests of the client's usage requests in 1-minute buckets (the runaway rule's recent window, figures/recent.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from openai_cost_exporter.sources.openai.client import AdminClient, build_http_client
from openai_cost_exporter.sources.openai.usage_responses import MAX_LIMITS, usage_query

KEY = "sk-admin-minutes0123456789abcdef"
START = 1_764_072_000  # 2025-11-25 12:00 UTC
EMPTY_PAGE = {"object": "page", "data": [], "has_more": False, "next_page": None}


@pytest.fixture
def sent() -> Iterator[tuple[AdminClient, list[httpx.Request]]]:
    """A client on a MockTransport that answers an empty usage page and records each request."""
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=EMPTY_PAGE)

    with build_http_client("https://openai.test/v1", KEY, transport=httpx.MockTransport(answer)) as http:
        yield AdminClient(http), requests


def test_minute_usage_asks_bucket_width_1m_with_the_limit_given(sent: tuple[AdminClient, list[httpx.Request]]) -> None:
    """`width="1m"` sends bucket_width=1m, the window, the project and model grouping and the page size asked."""
    client, requests = sent
    list(client.iter_usage("completions", START, START + 600, width="1m", limit=15))
    (request,) = requests
    assert request.url.path == "/v1/organization/usage/completions"
    assert request.url.params.multi_items() == [
        ("start_time", str(START)),
        ("end_time", str(START + 600)),
        ("bucket_width", "1m"),
        ("group_by", "project_id"),
        ("group_by", "model"),
        ("limit", "15"),
    ]


@pytest.mark.parametrize(("width", "limit"), [("1m", 0), ("1m", 1441), ("1h", 169), ("1d", 7), ("5m", 10)])
def test_a_limit_or_width_the_api_refuses_is_never_sent(
    sent: tuple[AdminClient, list[httpx.Request]], width: str, limit: int
) -> None:
    """A `limit` past the width's maximum (the API answers 400, §9) or a width not read raises before a request."""
    client, requests = sent
    with pytest.raises(ValueError, match="bucket_width"):
        list(client.iter_usage("completions", START, START + 600, width=width, limit=limit))
    assert requests == []


def test_limits_are_the_ones_of_the_shared_doc() -> None:
    """The largest pages allowed are openai-admin-api.md §3's: 1,440 one-minute and 168 one-hour buckets."""
    assert MAX_LIMITS == {"1m": 1440, "1h": 168}
    assert ("limit", 1440) in usage_query(0, 60, "1m", 1440, api_keys=False, project_ids=())
