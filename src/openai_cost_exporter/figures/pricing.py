"""Estimated USD of token usage, from the price table bundled with `genai-prices` (openai-admin-api.md §9).

An estimate, never a bill: usage rows carry tokens, not dollars (§3, §7.13), so these figures must stay apart from
the billed costs. How a `UsageRow` is priced, and what genai-prices 0.2.3 does with each part of it:

- **Price table.** The snapshot bundled in the installed package, in a `DataSnapshot` of our own: prices are never
  fetched at run time (nothing here calls `UpdatePrices`), and an `UpdatePrices` or `set_custom_snapshot` elsewhere
  in the process cannot change ours. Pricing is pure computation over that table; upgrading genai-prices updates it.
- **Date.** Prices depend on the request date (`StartDateConstraint`: new models, price cuts, batch and tier prices
  from a date on). A row is priced as of 00:00 UTC of its bucket's day, so a bucket is priced at the prices of its
  own day, not of today, and one lookup serves every bucket of a day. genai-prices also knows time-of-day prices
  (`TimeOfDateConstraint`), but no OpenAI model has one in 0.2.3.
- **Cached input.** `input_tokens` includes the cached ones (§3): the cached part is priced at `cache_read_mtok` and
  the rest at `input_mtok`. A model with `cache_read_mtok = None` (e.g. gpt-3.5-turbo, text-embedding-3-small) has
  no separate cached price: genai-prices then leaves the cached tokens inside the input tokens, at the input price.
- **Cache writes.** `input_cache_write_tokens` is not in `UsageRow`: cache writes stay in the input tokens at the
  input price, although some newer models (gpt-5.6-*, gpt-6-*) have a `cache_write_mtok` of their own.
- **Batch.** genai-prices models batch as a price variant `{"processing": "batch"}` (the Batch API's 50%), so batch
  rows get it, for the prices it covers: for many models only input and output, the cached price stays the
  standard one. Its batch variants start on 2026-10-14; batch usage before that date, and batch embeddings, are
  priced like non-batch.
- **Service tier.** Variants `{"service_tier": "flex" | "priority" | "fast" | "default"}` (from 2026-10-12 for
  most models); a row's `service_tier` is passed as it is, and a tier without a variant ("scale", or a model
  without flex prices) gets the standard price.
- **Long-context tiers** (`TieredPrices`, e.g. gpt-5.4, gpt-5.5) apply per request above a token threshold; a
  usage row sums many requests, so the base price is used: an underestimate for long prompts.
- **Modalities.** Rows do not split text, audio and image tokens: all are priced at the text token prices.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from importlib.metadata import version
from typing import TYPE_CHECKING

from openai_cost_exporter.core.models import UNKNOWN_MODEL, UsageRow, utc_day
from openai_cost_exporter.core.money import MONEY_CONTEXT, exact_sum

if TYPE_CHECKING:  # genai-prices and its price table are imported when a book is built: --no-usage never loads them
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import PriceCalculation, Usage

log = logging.getLogger(__name__)

#: genai-prices provider whose table prices our usage; usage endpoints report OpenAI models only.
PROVIDER_ID = "openai"
#: Version of the price table, for logs and for saying which table an estimate comes from.
PRICES_VERSION = version("genai-prices")

_PriceKey = tuple[str, dt.date, bool, str | None]  # model, UTC day, batch, service_tier


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """USD per token of one model on one day, for one processing mode (batch or not) and service tier."""

    input: Decimal
    cached_input: Decimal
    output: Decimal


def bundled_snapshot() -> DataSnapshot:
    """The price table shipped with genai-prices, in a snapshot no price update can replace."""
    from genai_prices.data import providers as bundled_providers  # noqa: PLC0415 (see TYPE_CHECKING above)
    from genai_prices.data_snapshot import DataSnapshot  # noqa: PLC0415

    return DataSnapshot(providers=bundled_providers, from_auto_update=False)


class PriceBook:
    """Estimates of usage rows in USD; looks each (model, day, batch, tier) up once, remembers models without a price.

    Not thread-safe: one book per cycle or per thread.
    """

    def __init__(self, snapshot: DataSnapshot | None = None) -> None:
        self._snapshot = snapshot if snapshot is not None else bundled_snapshot()
        self._prices: dict[_PriceKey, TokenPrices | None] = {}
        self._unpriced: set[str] = set()

    def estimate(self, row: UsageRow) -> Decimal | None:
        """Estimated USD of `row`, exact in `Decimal`; None when genai-prices has no token price for its model."""
        prices = self.token_prices(row.model, utc_day(row.start), batch=row.batch, service_tier=row.service_tier)
        if prices is None:
            return None
        # input_tokens includes the cached ones (§3); a row saying otherwise is not charged negative tokens.
        uncached = max(row.input_tokens - row.cached_input_tokens, 0)
        with localcontext(MONEY_CONTEXT):
            return (
                uncached * prices.input
                + row.cached_input_tokens * prices.cached_input
                + row.output_tokens * prices.output
            )

    def token_prices(
        self, model: str, day: dt.date, *, batch: bool = False, service_tier: str | None = None
    ) -> TokenPrices | None:
        """Per-token prices of `model` on `day`, or None (logged once per model) when genai-prices has none."""
        key = (model, day, batch, service_tier)
        try:
            return self._prices[key]
        except KeyError:
            prices = self._prices[key] = self._look_up(model, day, batch, service_tier)
            return prices

    def unpriced_models(self) -> frozenset[str]:
        """Models seen so far that have no price, so their usage is left out of every estimate."""
        return frozenset(self._unpriced)

    def _look_up(self, model: str, day: dt.date, batch: bool, service_tier: str | None) -> TokenPrices | None:
        if model == UNKNOWN_MODEL:  # our label for a null model: there is nothing to look up
            self._no_price(model)
            return None
        from genai_prices.types import Usage  # noqa: PLC0415 (imported by bundled_snapshot already)

        when = dt.datetime.combine(day, dt.time(), dt.UTC)
        context = {"processing": "batch"} if batch else {}
        if service_tier:
            context["service_tier"] = service_tier
        try:
            # One token of each kind gives the per-token price, and stays below every long-context threshold.
            plain = self._calc(Usage(input_tokens=1, output_tokens=1), model, when, context)
            cached = self._calc(Usage(input_tokens=1, cache_read_tokens=1), model, when, context)
        except LookupError:
            self._no_price(model)
            return None
        if plain.model_price.input_mtok is None and plain.model_price.output_mtok is None:
            self._no_price(model)  # priced per image, second or character only: not by tokens
            return None
        return TokenPrices(input=plain.input_price, cached_input=cached.input_price, output=plain.output_price)

    def _calc(self, usage: Usage, model: str, when: dt.datetime, context: dict[str, str]) -> PriceCalculation:
        return self._snapshot.calc(
            usage,
            model,
            provider_id=PROVIDER_ID,
            provider_api_url=None,
            genai_request_timestamp=when,
            price_context=context or None,
        )

    def _no_price(self, model: str) -> None:
        if model not in self._unpriced:
            self._unpriced.add(model)
            log.warning(
                "genai-prices %s has no token price for model %s; its usage is not estimated", PRICES_VERSION, model
            )


def estimate_rows(book: PriceBook, rows: Iterable[UsageRow]) -> dict[tuple[str, str], Decimal]:
    """Estimated USD per (project_id, model), summed exactly; rows without a price are left out (`unpriced_models`)."""
    amounts: dict[tuple[str, str], list[Decimal]] = {}
    for row in rows:
        amount = book.estimate(row)
        if amount is not None:
            amounts.setdefault((row.project_id, row.model), []).append(amount)
    return {key: exact_sum(values) for key, values in amounts.items()}
