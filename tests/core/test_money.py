"""Money as people read it: one formatter for Slack, the page, the report and the log."""

from __future__ import annotations

from decimal import Decimal

import pytest

from openai_cost_exporter.core.money import exact_sum, plain, ratio, usd

D = Decimal


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("0.125", "$0.13"),  # half a cent rounds up, everywhere
        ("1234.5", "$1,234.50"),
        ("-0.5", "-$0.50"),
        ("0E-6176", "$0.00"),
        ("1e30", "$1.000E+30"),  # an absurd amount stays one short figure
        ("-1e31", "-$1.000E+31"),
        ("NaN", "$?"),
        ("Infinity", "$?"),
    ],
)
def test_usd(amount: str, shown: str) -> None:
    """Dollars with cents and thousands separators; absurd and non-finite amounts never crash or sprawl."""
    assert usd(D(amount)) == shown


def test_plain_and_ratio() -> None:
    """Tables show amounts without the currency sign and nothing as a dash; ratios round half up to a tenth."""
    assert plain(D("1234.5")) == "1,234.50" and plain(D(0)) == "-"
    assert ratio(D("2.25")) == "2.3×" and ratio(D("Infinity")) == "∞×" and ratio(D("1e40")) == "∞×"


def test_exact_sum_keeps_every_digit() -> None:
    """Sums keep 39-digit amounts exact and skip zeros."""
    assert exact_sum([D("1e-31"), D("123456789012345678901234567890"), D("0E-6176")]) == D(
        "123456789012345678901234567890.0000000000000000000000000000001"
    )
