"""Tests of `usage_responses`: pages of the completions and embeddings usage endpoints read into `UsageRow`s."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest

from openai_cost_exporter.core.errors import MalformedResponse
from openai_cost_exporter.core.models import UNATTRIBUTED, UNKNOWN_MODEL, UsageRow
from openai_cost_exporter.sources.openai.usage_responses import UsagePage, parse_usage_page, result_object

WHERE = "GET /organization/usage/completions page 1"
START = 1_730_419_200  # 2024-11-01T00:00Z
DAY = 86_400

# The `x-oaiMeta` examples of `UsageCompletionsResult` and `UsageEmbeddingsResult` in openai-admin-openapi.yaml.
COMPLETIONS_EXAMPLE: dict[str, Any] = {
    "object": "organization.usage.completions.result",
    "input_tokens": 5000,
    "input_cached_tokens": 1800,
    "input_cache_write_tokens": 200,
    "input_uncached_tokens": 3000,
    "output_tokens": 1000,
    "input_text_tokens": 2500,
    "output_text_tokens": 800,
    "input_cached_text_tokens": 1500,
    "input_audio_tokens": 300,
    "input_cached_audio_tokens": 100,
    "output_audio_tokens": 100,
    "input_image_tokens": 200,
    "input_cached_image_tokens": 200,
    "output_image_tokens": 100,
    "num_model_requests": 5,
    "project_id": "proj_abc",
    "user_id": "user-abc",
    "api_key_id": "key_abc",
    "model": "gpt-4o-mini-2024-07-18",
    "batch": False,
    "service_tier": "default",
}
EMBEDDINGS_EXAMPLE: dict[str, Any] = {
    "object": "organization.usage.embeddings.result",
    "input_tokens": 20,
    "num_model_requests": 2,
    "project_id": "proj_abc",
    "user_id": "user-abc",
    "api_key_id": "key_abc",
    "model": "text-embedding-ada-002-v2",
}


def bucket(start: int, *results: dict[str, Any], width: int = DAY) -> dict[str, Any]:
    return {"object": "bucket", "start_time": start, "end_time": start + width, "results": list(results)}


def page(*buckets: dict[str, Any]) -> dict[str, Any]:
    return {"object": "page", "data": list(buckets), "has_more": False, "next_page": None}


def completions(**fields: Any) -> dict[str, Any]:
    result = copy.deepcopy(COMPLETIONS_EXAMPLE)
    result.update(fields)
    return {key: value for key, value in result.items() if value is not ...}  # `...` drops a field


def parse(body: object, kind: str = "completions") -> UsagePage:
    return parse_usage_page(body, WHERE, kind=kind)


def test_completions_example_is_read_into_one_row() -> None:
    """The spec's completions example becomes one row with its tokens, requests and dimensions."""
    result = parse(page(bucket(START, completions())))
    assert result == UsagePage(
        buckets=(START,),
        rows=(
            UsageRow(
                start=START,
                project_id="proj_abc",
                model="gpt-4o-mini-2024-07-18",
                kind="completions",
                input_tokens=5000,
                cached_input_tokens=1800,
                output_tokens=1000,
                requests=5,
                batch=False,
                service_tier="default",
            ),
        ),
    )


@pytest.mark.parametrize(
    "extra", [{}, {"output_tokens": 7, "input_cached_tokens": 3, "batch": True, "service_tier": "flex"}]
)
def test_embeddings_example_has_input_only(extra: dict[str, Any]) -> None:
    """An embeddings result counts input tokens and requests; output, cached, batch and tier are never read."""
    (row,) = parse(page(bucket(START, {**EMBEDDINGS_EXAMPLE, **extra})), kind="embeddings").rows
    assert row == UsageRow(START, "proj_abc", "text-embedding-ada-002-v2", "embeddings", 20, 0, 0, 2)


@pytest.mark.parametrize("width", [60, 3600, DAY])
def test_every_bucket_width_keeps_empty_buckets(width: int) -> None:
    """Buckets of 1m, 1h and 1d are read alike, and empty buckets are listed without rows."""
    body = page(bucket(START, width=width), bucket(START + width, completions(), width=width))
    result = parse(body)
    assert result.buckets == (START, START + width)
    assert [row.start for row in result.rows] == [START + width]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"project_id": None}, {"project_id": UNATTRIBUTED}),
        ({"project_id": ...}, {"project_id": UNATTRIBUTED}),
        ({"model": None}, {"model": UNKNOWN_MODEL}),
        ({"model": ""}, {"model": UNKNOWN_MODEL}),
        ({"batch": None, "service_tier": None}, {"batch": False, "service_tier": None}),
        ({"batch": ..., "service_tier": ...}, {"batch": False, "service_tier": None}),
        ({"batch": True, "service_tier": "flex"}, {"batch": True, "service_tier": "flex"}),
        ({"input_cached_tokens": ...}, {"cached_input_tokens": 0}),
        ({"input_cached_tokens": None}, {"cached_input_tokens": 0}),
        ({"input_tokens": 12.0, "output_tokens": 0.0}, {"input_tokens": 12, "output_tokens": 0}),
        ({"organization_name": "Acme", "user_email": "a@example.com"}, {}),
    ],
)
def test_nulls_missing_fields_and_lenient_values(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    """Null or missing dimensions get their labels, a missing optional count is 0, 12.0 is 12, extra keys pass."""
    (row,) = parse(page(bucket(START, completions(**fields)))).rows
    base = {"project_id": "proj_abc", "model": "gpt-4o-mini-2024-07-18", "batch": False, "service_tier": "default"}
    base |= {"input_tokens": 5000, "cached_input_tokens": 1800, "output_tokens": 1000}
    for name, value in (base | expected).items():
        assert getattr(row, name) == value
        assert type(getattr(row, name)) is type(value)


def test_rows_with_the_same_key_in_a_bucket_are_added() -> None:
    """Results differing only by an ungrouped dimension (user_id here) are summed into one row."""
    body = page(bucket(START, completions(user_id="user-a"), completions(user_id="user-b", input_cached_tokens=...)))
    (row,) = parse(body).rows
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens, row.requests) == (10000, 1800, 2000, 10)


@pytest.mark.parametrize(
    "other",
    [{"batch": True}, {"service_tier": "priority"}, {"model": "gpt-4o"}, {"project_id": "proj_xyz"}],
)
def test_rows_with_different_keys_stay_apart(other: dict[str, Any]) -> None:
    """Project, model, batch and service tier each tell rows of one bucket apart."""
    rows = parse(page(bucket(START, completions(), completions(**other)))).rows
    assert len(rows) == 2
    assert [row.input_tokens for row in rows] == [5000, 5000]


def test_the_same_key_in_two_buckets_gives_two_rows() -> None:
    """Rows are per bucket: the same project and model in two buckets are not added."""
    rows = parse(page(bucket(START, completions()), bucket(START + DAY, completions()))).rows
    assert [row.start for row in rows] == [START, START + DAY]


def test_a_repeated_bucket_is_ignored_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A bucket whose start_time repeats an earlier one on the page is skipped, so its tokens do not double."""
    body = page(bucket(START, completions()), bucket(START, completions(input_tokens=1)), bucket(START + DAY))
    with caplog.at_level(logging.WARNING, logger="openai_cost_exporter.sources.openai.usage_responses"):
        result = parse(body)
    assert result.buckets == (START, START + DAY)
    assert [row.input_tokens for row in result.rows] == [5000]
    assert [record.getMessage() for record in caplog.records] == [
        f"{WHERE}, bucket 1: start_time {START} repeats an earlier bucket of the page; ignored"
    ]


@pytest.mark.parametrize("kind", ["completions", "embeddings"])
def test_lone_surrogates_in_models_and_ids_are_replaced(kind: str) -> None:
    """A lone surrogate in a project id, model or service tier (JSON "\\ud800") is read as U+FFFD."""
    fields = {"object": result_object(kind), "project_id": "proj_\ud800", "model": "gpt-\udc004o"}
    if kind == "completions":
        fields["service_tier"] = "\udbffflex"
    body = json.loads(json.dumps(page(bucket(START, completions(**fields)))))  # the wire's "\\ud800" escapes
    [row] = parse(body, kind).rows
    assert (row.project_id, row.model) == ("proj_\ufffd", "gpt-\ufffd4o")
    assert row.service_tier == ("\ufffdflex" if kind == "completions" else None)


def good_page() -> dict[str, Any]:
    return page(bucket(START, completions()))


def with_result(**fields: Any) -> dict[str, Any]:
    return page(bucket(START, completions(**fields)))


def with_bucket(**fields: Any) -> dict[str, Any]:
    return page({**bucket(START, completions()), **fields})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected an object, got list"),
        ("page", "expected an object, got str"),
        ({**good_page(), "object": "list"}, "object is 'list', not 'page'"),
        ({"data": []}, "object is None, not 'page'"),
        ({**good_page(), "data": {}}, "`data` is dict, not a list"),
        (page([]), "bucket 0: expected an object, got list"),  # type: ignore[arg-type]  # a list as a bucket
        (with_bucket(object="organization.costs.result"), "bucket 0: object is 'organization.costs.result'"),
        (with_bucket(start_time=None), "bucket 0: start_time is None, not a Unix time"),
        (with_bucket(start_time="1730419200"), "start_time is '1730419200', not a Unix time"),
        (with_bucket(start_time=True), "start_time is True, not a Unix time"),
        (with_bucket(end_time=START), f"end_time {START} is not after start_time {START}"),
        (with_bucket(end_time=1.5), "end_time is 1.5, not a Unix time"),
        (with_bucket(results=None), "bucket 0: `results` is NoneType, not a list"),
        (page({**bucket(START), "results": [[]]}), "bucket 0, result 0: expected an object, got list"),
        (with_result(object="organization.costs.result"), "result 0: object is 'organization.costs.result'"),
        (page(bucket(START, EMBEDDINGS_EXAMPLE)), "object is 'organization.usage.embeddings.result', not"),
        (with_result(object=...), "object is None, not 'organization.usage.completions.result'"),
        (with_result(input_tokens=-1), "input_tokens is -1, not a non-negative integer"),
        (with_result(output_tokens=True), "output_tokens is True, not a non-negative integer"),
        (with_result(input_cached_tokens=False), "input_cached_tokens is False, not a non-negative integer"),
        (with_result(num_model_requests="5"), "num_model_requests is '5', not a non-negative integer"),
        (with_result(input_tokens=12.5), "input_tokens is 12.5, not a non-negative integer"),
        (with_result(input_tokens=float("nan")), "input_tokens is nan, not a non-negative integer"),
        (with_result(input_tokens=-3.0), "input_tokens is -3, not a non-negative integer"),
        (with_result(input_tokens=...), "input_tokens is missing, and the schema requires it"),
        (with_result(output_tokens=None), "output_tokens is missing, and the schema requires it"),
        (with_result(num_model_requests=...), "num_model_requests is missing"),
        (with_result(project_id=42), "project_id is 42, not a string"),
        (with_result(model=["gpt-4o"]), "model is ['gpt-4o'], not a string"),
        (with_result(batch="false"), "batch is 'false', not a boolean"),
        (with_result(service_tier=1), "service_tier is 1, not a string"),
    ],
)
def test_malformed_pages_are_rejected_naming_where(body: object, message: str) -> None:
    """A body that is not the documented page, bucket or result shape raises MalformedResponse quoting `where`."""
    with pytest.raises(MalformedResponse) as raised:
        parse(body)
    assert str(raised.value).startswith(WHERE)
    assert message in str(raised.value)


def test_a_malformed_result_in_a_repeated_bucket_is_still_rejected() -> None:
    """Only well-formed repeats are skipped: a bad shape anywhere on the page fails the page."""
    body = page(bucket(START, completions()), {**bucket(START), "results": "none"})
    with pytest.raises(MalformedResponse, match="bucket 1: `results` is str"):
        parse(body)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("completions", "organization.usage.completions.result"), ("embeddings", "organization.usage.embeddings.result")],
)
def test_result_object_names_the_endpoint(kind: str, expected: str) -> None:
    """Each usage kind expects the result object of its own endpoint."""
    assert result_object(kind) == expected


def test_an_unsupported_kind_is_a_programming_error() -> None:
    """Asking for a usage kind this module does not read raises ValueError before the body is looked at."""
    with pytest.raises(ValueError, match="usage kind 'images'"):
        parse(good_page(), kind="images")
