"""What the fake's models cost per token, so its usage endpoints serve tokens that price back to its costs.

Prices come from `genai-prices` (the table the exporter estimates with, openai-admin-api.md §9), read once at
import as integer nanodollars per million tokens. One model, `UNPRICED_MODEL`, is unknown to genai-prices on
purpose: the fake bills it at a private price, so a test can check that an estimate names it instead of
guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from genai_prices import Usage, calc_price

from openai_cost_exporter.fake.plan import MODELS

EMBEDDING_MODEL = "text-embedding-3-small"
UNPRICED_MODEL = "gpt-imaginary-2026-01-01"
INPUT, OUTPUT, CACHED = 0, 1, 2  # token directions, in the order of `ModelPrice.per_million`
DIRECTION_INDEX = {"input": INPUT, "output": OUTPUT, "cached input": CACHED}
_MILLION = 1_000_000
#: Per model of a project: (model, ((item index, direction), ...)) over its token line items.
UsageGroups = tuple[tuple[str, tuple[tuple[int, int], ...]], ...]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Nanodollars per million tokens by direction (input, output, cached input); 0 = not billed."""

    per_million: tuple[int, int, int]
    tokens_per_request: int  # an average, to count requests deterministically
    embeddings: bool = False

    def tokens(self, direction: int, nanos: int) -> int:
        """Whole tokens that `nanos` of spend buys (rounded down: priced back, they never exceed it)."""
        price = self.per_million[direction]
        return nanos * _MILLION // price if price and nanos > 0 else 0

    def counts(self, spend: Sequence[int]) -> tuple[int, int, int, int]:
        """(input incl. cached, cached input, output tokens, requests) bought by spend per direction."""
        uncached, output, cached = (self.tokens(d, spend[d]) for d in (INPUT, OUTPUT, CACHED))
        total = uncached + cached + output
        requests = max(1, total // self.tokens_per_request) if total else 0
        return uncached + cached, cached, output, requests


def _nanos_per_million(model: str, usage: Usage) -> int:
    price = calc_price(usage, model_ref=model, provider_id="openai")
    return int(price.total_price.scaleb(9))


def genai_price(model: str, tokens_per_request: int, *, embeddings: bool = False) -> ModelPrice:
    """The genai-prices price of an OpenAI model; LookupError if genai-prices does not know it."""
    million = Usage(input_tokens=_MILLION)
    per_million = (
        _nanos_per_million(model, million),
        0 if embeddings else _nanos_per_million(model, Usage(output_tokens=_MILLION)),
        0 if embeddings else _nanos_per_million(model, Usage(input_tokens=_MILLION, cache_read_tokens=_MILLION)),
    )
    return ModelPrice(per_million, tokens_per_request, embeddings)


PRICES: dict[str, ModelPrice] = {
    **{m: genai_price(m, 5_000 if m.startswith("o") else 2_000) for m in MODELS},
    EMBEDDING_MODEL: genai_price(EMBEDDING_MODEL, 500, embeddings=True),
    # Private: genai-prices has no entry for this model (calc_price raises LookupError).
    UNPRICED_MODEL: ModelPrice((1_000_000_000, 4_000_000_000, 250_000_000), 2_000),
}


def split_line_item(line_item: str) -> tuple[str, int] | None:
    """(model, direction) of a token line item such as "gpt-4o-2024-08-06, cached input"; None otherwise."""
    model, _, direction = line_item.rpartition(", ")
    index = DIRECTION_INDEX.get(direction)
    if index is None or model not in PRICES or not PRICES[model].per_million[index]:
        return None
    return model, index


def usage_groups(line_items: Sequence[str]) -> UsageGroups:
    """A project's token line items grouped by model, as item indices and directions."""
    by_model: dict[str, list[tuple[int, int]]] = {}
    for i, line_item in enumerate(line_items):
        split = split_line_item(line_item)
        if split is not None:
            by_model.setdefault(split[0], []).append((i, split[1]))
    return tuple((model, tuple(pairs)) for model, pairs in by_model.items())
