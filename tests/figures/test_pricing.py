"""Tests of `pricing`: usage rows estimated in USD from the price table bundled with genai-prices."""

from __future__ import annotations

import datetime as dt
import logging
import socket
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import data_snapshot

from openai_cost_exporter.core.models import UNKNOWN_MODEL, UsageRow, day_start
from openai_cost_exporter.figures.pricing import PriceBook, TokenPrices, bundled_snapshot, estimate_rows

MILLION = 1_000_000
BEFORE_VARIANTS = day_start(dt.date(2026, 9, 1))  # genai-prices 0.2.3 has batch and tier prices from 2026-10-12/14
AFTER_VARIANTS = day_start(dt.date(2026, 11, 2)) + 3600


def usage(model: str = "gpt-4o-2024-08-06", **fields: Any) -> UsageRow:
    values: dict[str, Any] = {
        "start": BEFORE_VARIANTS,
        "project_id": "proj_abc",
        "model": model,
        "kind": "completions",
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "requests": 1,
    }
    return UsageRow(**(values | fields))


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ({"input_tokens": MILLION}, "2.50"),
        ({"input_tokens": MILLION, "cached_input_tokens": MILLION}, "1.25"),
        ({"output_tokens": MILLION}, "10.00"),
        ({"input_tokens": MILLION, "cached_input_tokens": 400_000, "output_tokens": 500_000}, "7.00"),
        ({"input_tokens": 1}, "0.0000025"),
        ({}, "0"),
    ],
)
def test_gpt_4o_prices(tokens: dict[str, int], expected: str) -> None:
    """gpt-4o-2024-08-06 costs $2.50 per 1M uncached input, $1.25 per 1M cached input and $10 per 1M output."""
    amount = PriceBook().estimate(usage("gpt-4o-2024-08-06", **tokens))
    assert isinstance(amount, Decimal)
    assert amount == Decimal(expected)


def test_token_prices_are_decimals_per_token() -> None:
    """The looked-up prices are Decimal USD per token, not per million and never floats."""
    prices = PriceBook().token_prices("gpt-4o-2024-08-06", dt.date(2026, 9, 1))
    assert prices == TokenPrices(Decimal("0.0000025"), Decimal("0.00000125"), Decimal("0.00001"))
    assert prices is not None
    assert all(type(price) is Decimal for price in (prices.input, prices.cached_input, prices.output))


@pytest.mark.parametrize(
    ("model", "kind", "expected"),
    [
        ("text-embedding-3-small", "embeddings", "0.02"),
        ("text-embedding-ada-002-v2", "embeddings", "0.10"),  # the model of the spec's embeddings example
        ("gpt-3.5-turbo", "completions", "0.50"),  # no cached price: cached tokens at the input price
    ],
)
def test_models_without_a_cached_price(model: str, kind: str, expected: str) -> None:
    """Embeddings are priced by input tokens; a model without a cached price charges cached input as input."""
    plain = PriceBook().estimate(usage(model, kind=kind, input_tokens=MILLION))
    cached = PriceBook().estimate(usage(model, kind=kind, input_tokens=MILLION, cached_input_tokens=MILLION))
    assert plain == cached == Decimal(expected)


@pytest.mark.parametrize(
    ("start", "batch", "tier", "model", "expected"),
    [
        (AFTER_VARIANTS, False, None, "gpt-4o-2024-08-06", "12.50"),
        (AFTER_VARIANTS, True, None, "gpt-4o-2024-08-06", "6.25"),  # batch: 1.25 in, 5 out
        (BEFORE_VARIANTS, True, None, "gpt-4o-2024-08-06", "12.50"),  # batch prices not modelled before 2026-10-14
        (AFTER_VARIANTS, False, "priority", "gpt-4o-2024-08-06", "21.25"),  # 4.25 in, 17 out
        (AFTER_VARIANTS, False, "default", "gpt-4o-2024-08-06", "12.50"),
        (AFTER_VARIANTS, False, "scale", "gpt-4o-2024-08-06", "12.50"),  # a tier without a variant
        (AFTER_VARIANTS, False, "flex", "gpt-5", "5.625"),  # 0.625 in, 5 out
        (AFTER_VARIANTS, False, "flex", "gpt-4o-2024-08-06", "12.50"),  # gpt-4o has no flex prices
        (AFTER_VARIANTS, True, None, "text-embedding-3-small", "0.02"),  # no batch price for embeddings
    ],
)
def test_batch_and_service_tier_follow_genai_prices(
    start: int, batch: bool, tier: str | None, model: str, expected: str
) -> None:
    """Batch and service-tier rows get genai-prices' variant prices when it has them for that day, else standard."""
    row = usage(model, start=start, input_tokens=MILLION, output_tokens=MILLION, batch=batch, service_tier=tier)
    if model.startswith("text-embedding"):
        row = usage(model, start=start, kind="embeddings", input_tokens=MILLION, batch=batch)
    assert PriceBook().estimate(row) == Decimal(expected)


def test_more_cached_than_input_is_not_charged_negative() -> None:
    """A row claiming more cached than total input tokens prices the cached ones and no negative rest."""
    assert PriceBook().estimate(usage(input_tokens=10, cached_input_tokens=MILLION)) == Decimal("1.25")


@pytest.mark.parametrize("model", ["gpt-nonexistent-9", "ft:davinci-001:acme::x", UNKNOWN_MODEL, "tts-1"])
def test_unpriced_model_is_none_and_reported_once(model: str, caplog: pytest.LogCaptureFixture) -> None:
    """A model without a token price (unknown, null, or priced per character) gives None and one log line."""
    book = PriceBook()
    with caplog.at_level(logging.WARNING, logger="openai_cost_exporter.figures.pricing"):
        amounts = [book.estimate(usage(model, start=BEFORE_VARIANTS + n * 86_400, input_tokens=5)) for n in range(3)]
        amounts.append(book.estimate(usage(model, batch=True, input_tokens=5)))
    assert amounts == [None] * 4
    assert book.unpriced_models() == frozenset({model})
    assert len(caplog.records) == 1
    assert model in caplog.records[0].getMessage()
    assert caplog.records[0].args is not None  # lazy %s arguments, not a pre-formatted string


def test_unpriced_models_lists_only_models_without_a_price() -> None:
    """Priced models never appear in unpriced_models; each unpriced model appears once."""
    book = PriceBook()
    for model in ("gpt-4o", "nope-1", "text-embedding-3-small", "nope-2", "nope-1"):
        book.estimate(usage(model, input_tokens=1))
    assert book.unpriced_models() == frozenset({"nope-1", "nope-2"})


def test_prices_are_looked_up_per_model_and_day_not_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of rows of one model on one day cost one lookup, not one per row; a new day is a new lookup."""
    snapshot = bundled_snapshot()
    calls: list[str] = []
    calc = snapshot.calc

    def counting_calc(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return calc(*args, **kwargs)

    monkeypatch.setattr(snapshot, "calc", counting_calc)
    book = PriceBook(snapshot)
    rows = [usage(start=BEFORE_VARIANTS + 60 * n, input_tokens=n, project_id=f"p{n % 7}") for n in range(1440)]
    rows += [usage("gpt-4o-mini", start=BEFORE_VARIANTS + 60 * n, output_tokens=n) for n in range(1440)]
    rows += [usage(start=BEFORE_VARIANTS + 86_400 + 60 * n, input_tokens=n) for n in range(10)]  # the next day
    rows += [usage("nope", input_tokens=n) for n in range(100)]
    estimate_rows(book, rows)
    # Two probes (with and without cached tokens) per model and day; an unknown model fails on the first probe.
    assert Counter(calls) == {"gpt-4o-2024-08-06": 4, "gpt-4o-mini": 2, "nope": 1}


def test_estimate_rows_sums_exactly_per_project_and_model() -> None:
    """estimate_rows adds the Decimal estimates per (project_id, model) without rounding and skips unpriced rows."""
    rows = [
        usage(input_tokens=1),
        usage(input_tokens=1, start=BEFORE_VARIANTS + 60),
        usage(output_tokens=MILLION, project_id="proj_xyz"),
        usage("gpt-4o-mini-2024-07-18", input_tokens=MILLION),
        usage("nope", input_tokens=MILLION),
        usage(UNKNOWN_MODEL, input_tokens=MILLION),
    ]
    totals = estimate_rows(PriceBook(), rows)
    assert totals == {
        ("proj_abc", "gpt-4o-2024-08-06"): Decimal("0.000005"),
        ("proj_xyz", "gpt-4o-2024-08-06"): Decimal("10"),
        ("proj_abc", "gpt-4o-mini-2024-07-18"): Decimal("0.15"),
    }
    assert all(type(total) is Decimal for total in totals.values())


def test_a_large_sum_keeps_every_digit() -> None:
    """Sums beyond the default 28 significant digits are exact (the money policy), not rounded."""
    rows = [usage(input_tokens=10**30), usage(input_tokens=1, start=BEFORE_VARIANTS + 60)]
    (total,) = estimate_rows(PriceBook(), rows).values()
    assert total == Decimal("2500000000000000000000000.0000025")  # 32 significant digits


def test_pricing_does_no_network_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh book prices rows with every socket connection refused: prices come from the bundled table."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("pricing opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    book = PriceBook()
    assert book.estimate(usage(input_tokens=MILLION)) == Decimal("2.50")
    assert book.estimate(usage("no-such-model", input_tokens=1)) is None


def test_a_global_price_update_does_not_change_the_book(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot installed process-wide (what UpdatePrices does) is ignored: the book keeps the bundled table."""
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", data_snapshot.DataSnapshot([], from_auto_update=True))
    assert PriceBook().estimate(usage(input_tokens=MILLION)) == Decimal("2.50")
