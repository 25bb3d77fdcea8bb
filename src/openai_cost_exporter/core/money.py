"""Money: one Decimal policy for sums, one way to show an amount to a person.

Amounts stay `Decimal` from the wire to the last step (openai-admin-api.md §7.1: strings such as `"0E-6176"`
and 39-digit decimals); a float appears only when a metric sample is written (`to_float`).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext

ZERO = Decimal(0)
#: Digits kept when adding amounts: 39-digit amounts of any realistic size add up exactly.
SUM_PRECISION = 200
#: The context every sum and ratio of money uses.
MONEY_CONTEXT = Context(prec=SUM_PRECISION)
_CENT = Decimal("0.01")
_TENTH = Decimal("0.1")
#: Beyond this an amount is shown in scientific notation rather than as a 60-digit figure.
_SHOWN_DIGITS = 30


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """Sum amounts without the default 28-digit rounding; zeros (e.g. `0E-6176`) add nothing, so skip them."""
    total = ZERO
    with localcontext(MONEY_CONTEXT):
        for value in values:
            if value:
                total += value
    return total


def usd(amount: Decimal) -> str:
    """US dollars as people read them: `$1,234.56`, `-$0.50`; half a cent rounds up ($0.125 is $0.13)."""
    if not amount.is_finite():
        return "$?"
    if amount.adjusted() >= _SHOWN_DIGITS:
        return f"{'-' if amount < 0 else ''}${abs(amount):.3E}"
    with localcontext(MONEY_CONTEXT):
        rounded = amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.2f}"


def plain(amount: Decimal) -> str:
    """`1,234.56` without the sign of the currency (tables), `-` for nothing."""
    return usd(amount).replace("$", "") if amount else "-"


def ratio(value: Decimal) -> str:
    """A ratio to one decimal place, `4.0×`."""
    if not value.is_finite() or value.adjusted() >= _SHOWN_DIGITS:
        return "∞×"
    with localcontext(MONEY_CONTEXT):
        return f"{value.quantize(_TENTH, rounding=ROUND_HALF_UP)}×"


def to_float(amount: Decimal) -> float:
    """The value of a metric sample (the one place money becomes a float)."""
    return float(amount)
