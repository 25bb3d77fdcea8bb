"""Reading the per-project listings: API keys with their owners, and hard spend limits in cents."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from openai_cost_exporter.core.errors import MalformedResponse
from openai_cost_exporter.core.models import ApiKey, SpendLimit
from openai_cost_exporter.sources.openai.directory_responses import parse_api_keys, parse_spend_limit

WHERE = "GET /organization/projects/proj_a/api_keys page 1"
LIMIT_WHERE = "GET /organization/projects/proj_a/spend_limit"


def key(key_id: object = "key_abc", name: object = "Checkout", owner: object = None) -> dict[str, Any]:
    """A key as the API lists it (`organization.project.api_key`)."""
    item: dict[str, Any] = {
        "object": "organization.project.api_key",
        "redacted_value": "sk-abc...def",
        "created_at": 1711471533,
        "last_used_at": 1711471534,
        "id": key_id,
        "name": name,
    }
    if owner is not None:
        item["owner"] = owner
    return item


def user(**fields: object) -> dict[str, Any]:
    return {"type": "user", "user": {"object": "organization.user", "role": "owner", **fields}}


def service_account(**fields: object) -> dict[str, Any]:
    return {"type": "service_account", "service_account": {"object": "organization.project.service_account", **fields}}


def keys_page(*items: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": list(items), "has_more": False}


def limit_body(cents: object = 12345, **extra: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "project.spend_limit",
        "threshold_amount": cents,
        "currency": "USD",
        "interval": "month",
        "enforcement": {"status": "inactive"},
    }
    body.update(extra)
    return body


@pytest.mark.parametrize(
    ("owner", "owner_type", "shown"),
    [
        (user(id="user_1", name="Alice Example", email="alice@example.com"), "user", "Alice Example"),
        (user(id="user_1", name="", email="alice@example.com"), "user", "alice@example.com"),
        (user(id="user_1", email="alice@example.com"), "user", "alice@example.com"),
        (user(id="user_1", name=None, email=None), "user", "user_1"),
        (user(), "user", ""),
        (service_account(id="svc_1", name="checkout-bot"), "service_account", "checkout-bot"),
        (service_account(id="svc_1"), "service_account", "svc_1"),
        ({"type": "user"}, "user", ""),  # the user object is missing
        ({"type": "organization", "organization": {"name": "x"}}, "organization", ""),  # a kind not known
        ({"user": {"name": "Alice"}}, "", ""),  # no type
        ("not an object", "", ""),
    ],
)
def test_key_owners(owner: object, owner_type: str, shown: str) -> None:
    """A user is named by name, else e-mail, else id; a service account by name, else id; else no owner."""
    [parsed] = parse_api_keys(keys_page(key(owner=owner)), WHERE)
    assert (parsed.owner_type, parsed.owner) == (owner_type, shown)


def test_a_key_without_owner_has_none() -> None:
    """A key the API lists without an owner has an empty owner and owner type."""
    assert parse_api_keys(keys_page(key()), WHERE) == [ApiKey("key_abc", "Checkout", "", "")]


@pytest.mark.parametrize("name", [None, "", 42])
def test_a_key_without_a_name_is_named_by_its_id(name: object) -> None:
    """A missing, empty or non-text name shows the key's id."""
    [parsed] = parse_api_keys(keys_page(key(name=name)), WHERE)
    assert parsed.name == "key_abc"


def test_keys_keep_page_order_and_every_field() -> None:
    """Every key of the page is read, in order, with its id, name and owner."""
    body = keys_page(
        key("key_1", "One", user(id="u", name="Alice")),
        key("key_2", "Two", service_account(id="s", name="bot")),
    )
    assert parse_api_keys(body, WHERE) == [
        ApiKey("key_1", "One", "Alice", "user"),
        ApiKey("key_2", "Two", "bot", "service_account"),
    ]


def test_lone_surrogates_in_names_are_replaced() -> None:
    """A lone surrogate in an id, name or owner becomes U+FFFD, so it can be stored and sent."""
    [parsed] = parse_api_keys(keys_page(key("key_\ud800", "na\udc00me", user(name="Al\ud800"))), WHERE)
    assert parsed == ApiKey("key_\ufffd", "na\ufffdme", "Al\ufffd", "user")


@pytest.mark.parametrize("key_id", [None, "", 17, ["key"]])
def test_a_key_without_a_string_id_is_malformed(key_id: object) -> None:
    """A key whose id is missing, empty or not a string makes the page malformed, naming the key."""
    with pytest.raises(MalformedResponse, match=r"page 1, key 1: id is"):
        parse_api_keys(keys_page(key("key_ok"), key(key_id)), WHERE)


@pytest.mark.parametrize("body", [{}, {"data": None}, {"data": {"id": "key"}}])
def test_a_page_without_a_data_list_is_malformed(body: dict[str, Any]) -> None:
    """A keys page whose `data` is not a list is malformed."""
    with pytest.raises(MalformedResponse, match="`data`"):
        parse_api_keys(body, WHERE)


def test_a_key_that_is_not_an_object_is_malformed() -> None:
    """An item of `data` that is not an object makes the page malformed."""
    with pytest.raises(MalformedResponse, match="key 0: expected an object"):
        parse_api_keys(keys_page("key_abc"), WHERE)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cents", "usd"),
    [
        (12345, Decimal("123.45")),
        (0, Decimal("0")),
        (1, Decimal("0.01")),
        (100_000_00, Decimal("100000")),
        (10**40 + 1, Decimal("100000000000000000000000000000000000000.01")),  # beyond 28 digits, still exact
    ],
)
def test_threshold_amount_is_cents(cents: int, usd: Decimal) -> None:
    """`threshold_amount` is in cents: the limit in USD is it divided by 100, exactly."""
    parsed = parse_spend_limit(limit_body(cents), LIMIT_WHERE)
    assert parsed is not None
    assert parsed.threshold_usd == usd
    assert str(parsed.threshold_usd) == str(usd)


@pytest.mark.parametrize("body", [{}, {"object": "project.spend_limit", "threshold_amount": None}])
def test_a_body_without_a_threshold_is_no_limit(body: dict[str, Any]) -> None:
    """An empty object (a project without a limit) or a null threshold means no limit."""
    assert parse_spend_limit(body, LIMIT_WHERE) is None


@pytest.mark.parametrize(
    ("enforcement", "status"),
    [
        ({"status": "enforcing"}, "enforcing"),
        ({"status": "inactive"}, "inactive"),
        ({"status": ""}, "unknown"),
        ({}, "unknown"),
        (None, "unknown"),
        ("enforcing", "unknown"),  # not an object
    ],
)
def test_enforcement_status(enforcement: object, status: str) -> None:
    """`enforcement.status` is read as sent; a missing or odd one is "unknown"."""
    assert parse_spend_limit(limit_body(500, enforcement=enforcement), LIMIT_WHERE) == SpendLimit(Decimal(5), status)


@pytest.mark.parametrize("cents", [123.45, 100.0, "12345", -1, True, False, [100], {"value": 1}])
def test_a_threshold_that_is_no_whole_number_of_cents_is_malformed(cents: object) -> None:
    """A fractional, textual, negative or boolean threshold is malformed and names the listing."""
    with pytest.raises(MalformedResponse, match=r"spend_limit: threshold_amount is .*whole number of cents"):
        parse_spend_limit(limit_body(cents), LIMIT_WHERE)


@pytest.mark.parametrize("currency", ["EUR", "", None, 840])
def test_a_currency_other_than_usd_is_malformed(currency: object) -> None:
    """A limit in another currency (or a currency that is not text) is malformed rather than read as USD."""
    with pytest.raises(MalformedResponse, match="currency is"):
        parse_spend_limit(limit_body(100, currency=currency), LIMIT_WHERE)


@pytest.mark.parametrize("currency", ["usd", "USD"])
def test_usd_in_any_case_is_read(currency: str) -> None:
    """`USD` is read whatever its case."""
    assert parse_spend_limit(limit_body(250, currency=currency), LIMIT_WHERE) == SpendLimit(Decimal("2.5"), "inactive")


def test_a_missing_currency_is_usd() -> None:
    """A limit without a currency is read as USD, the only currency the schema allows."""
    body = limit_body(250)
    del body["currency"]
    assert parse_spend_limit(body, LIMIT_WHERE) == SpendLimit(Decimal("2.5"), "inactive")
