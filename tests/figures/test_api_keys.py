"""Spend by API key: which keys keep a series of their own, the exact "other" fold, and how keys are shown."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from openai_cost_exporter.core.models import NO_API_KEY, ApiKey
from openai_cost_exporter.core.money import exact_sum
from openai_cost_exporter.figures.api_keys import OTHER_KEYS, capped, kept_keys, key_name, key_owner, top_keys

D = Decimal
D1 = dt.date(2026, 12, 1)
D2 = dt.date(2026, 12, 2)
LONG = D("0.123456789012345678901234567890123")  # 33 significant digits: beyond Decimal's default 28
LONG_PLUS = D("0.123456789012345678901234567890124")  # LONG and one unit in its 33rd digit
TINY_ZERO = D("0E-6176")

KEYS = {
    "key_alice": ApiKey("key_alice", "Checkout service", "Alice Example", "user"),
    "key_bot": ApiKey("key_bot", "Batch jobs", "checkout-bot", "service_account"),
    "key_anon": ApiKey("key_anon", "Legacy", "", ""),
}


def project_sums(amounts: dict[tuple[str, str], Decimal]) -> dict[str, Decimal]:
    """Per project, the exact sum of its series."""
    values: dict[str, list[Decimal]] = {}
    for (pid, _), amount in amounts.items():
        values.setdefault(pid, []).append(amount)
    return {pid: exact_sum(amounts) for pid, amounts in values.items()}


def test_kept_keys_are_the_top_spenders_over_all_the_days() -> None:
    """The ranking adds every day up: a key big on one day only loses to a key steady over the window."""
    days = {
        D1: {("proj_a", "key_steady"): D("3"), ("proj_a", "key_burst"): D("5"), ("proj_a", "key_small"): D("1")},
        D2: {("proj_a", "key_steady"): D("3"), ("proj_a", "key_small"): D("1")},
    }
    assert kept_keys(days, 1) == {"proj_a": frozenset({"key_steady"})}
    assert kept_keys(days, 2) == {"proj_a": frozenset({"key_steady", "key_burst"})}


def test_kept_keys_break_ties_by_id() -> None:
    """Keys with equal spend are ranked by id, so the kept set does not depend on the order of the rows."""
    amounts = {("proj_a", "key_c"): D("2"), ("proj_a", "key_a"): D("2.00"), ("proj_a", "key_b"): D("2.0")}
    assert kept_keys({D1: amounts}, 2) == {"proj_a": frozenset({"key_a", "key_b"})}
    reversed_rows = dict(reversed(list(amounts.items())))
    assert kept_keys({D1: reversed_rows}, 2) == {"proj_a": frozenset({"key_a", "key_b"})}


def test_kept_keys_never_count_spend_outside_keys() -> None:
    """The biggest spender being `none` does not take a place of the cap; a project with only `none` is absent."""
    days = {
        D1: {
            ("proj_a", NO_API_KEY): D("100"),
            ("proj_a", "key_x"): D("1"),
            ("proj_a", "key_y"): D("2"),
            ("proj_b", NO_API_KEY): D("7"),
        }
    }
    assert kept_keys(days, 1) == {"proj_a": frozenset({"key_y"})}


def test_kept_keys_rank_each_project_on_its_own() -> None:
    """The cap is per project: a small project keeps its key beside a big project's."""
    days = {D1: {("proj_a", "key_big"): D("1000"), ("proj_a", "key_mid"): D("500"), ("proj_b", "key_tiny"): D("0.01")}}
    assert kept_keys(days, 1) == {"proj_a": frozenset({"key_big"}), "proj_b": frozenset({"key_tiny"})}


def test_kept_keys_sum_long_decimals_exactly() -> None:
    """Totals past 28 digits are compared exactly: a difference in the 33rd digit decides the ranking."""
    days = {D1: {("proj_a", "key_a"): LONG, ("proj_a", "key_b"): LONG}, D2: {("proj_a", "key_b"): D("1E-33")}}
    assert kept_keys(days, 1) == {"proj_a": frozenset({"key_b"})}
    assert kept_keys({D1: {("proj_a", "key_a"): LONG_PLUS, ("proj_a", "key_b"): LONG}}, 1) == {
        "proj_a": frozenset({"key_a"})
    }


def test_capped_folds_keys_beyond_the_kept_set_into_other() -> None:
    """Keys outside the kept set become one `other` series per project; kept keys and `none` stay their own."""
    amounts = {
        ("proj_a", "key_1"): D("5"),
        ("proj_a", "key_2"): D("1.25"),
        ("proj_a", "key_3"): D("0.75"),
        ("proj_a", NO_API_KEY): D("0.5"),
        ("proj_b", "key_9"): D("2"),
    }
    series = capped(amounts, {"proj_a": {"key_1"}, "proj_b": {"key_9"}})
    assert series == {
        ("proj_a", "key_1"): D("5"),
        ("proj_a", NO_API_KEY): D("0.5"),
        ("proj_a", OTHER_KEYS): D("2.00"),
        ("proj_b", "key_9"): D("2"),
    }


def test_capped_keeps_none_even_when_no_key_is_kept() -> None:
    """Spend outside keys is never folded, even for a project with no kept set at all."""
    amounts = {("proj_a", NO_API_KEY): D("3"), ("proj_a", "key_1"): D("1")}
    assert capped(amounts, {}) == {("proj_a", NO_API_KEY): D("3"), ("proj_a", OTHER_KEYS): D("1")}


@pytest.mark.parametrize("top", [0, 1, 2, 5])
def test_capped_series_add_up_to_the_project_exactly(top: int) -> None:
    """Whatever the cap, the series of a project sum to its figure exactly, long decimals and 0E-6176 included."""
    amounts = {
        ("proj_a", "key_1"): LONG,
        ("proj_a", "key_2"): D("1E-40"),
        ("proj_a", "key_3"): TINY_ZERO,
        ("proj_a", "key_4"): D("123456789.987654321987654321987654321"),
        ("proj_a", NO_API_KEY): D("-0.000000000000000000000000000000001"),
        ("proj_b", "key_5"): TINY_ZERO,
        ("proj_b", "key_6"): LONG * 3,
    }
    kept = kept_keys({D1: amounts}, top)
    series = capped(amounts, kept)
    assert project_sums(series) == project_sums(amounts)
    assert exact_sum(series.values()) == exact_sum(amounts.values())
    assert len([key for key in series if key[0] == "proj_a"]) <= top + 2


def test_capped_a_lone_tiny_zero_stays_zero() -> None:
    """A key whose only amount is 0E-6176 folds into an `other` of zero, not a 6176-digit figure."""
    series = capped({("proj_a", "key_1"): TINY_ZERO}, {})
    assert series == {("proj_a", OTHER_KEYS): D(0)}
    assert series[("proj_a", OTHER_KEYS)].as_tuple().exponent == 0


@pytest.mark.parametrize(
    ("key_id", "name", "owner"),
    [
        ("key_alice", "Checkout service", "Alice Example"),
        ("key_bot", "Batch jobs", "service account checkout-bot"),
        ("key_anon", "Legacy", ""),
        ("key_deleted", "key_deleted", ""),  # spent, then deleted: it keeps its id
        (NO_API_KEY, "no API key", ""),
        (OTHER_KEYS, "other keys", ""),
    ],
)
def test_key_name_and_owner(key_id: str, name: str, owner: str) -> None:
    """A key shows its name and owner; a deleted one its id; `none` and `other` say what they are."""
    assert key_name(key_id, KEYS) == name
    assert key_owner(key_id, KEYS) == owner


def test_top_keys_are_the_largest_of_the_project_with_names() -> None:
    """The largest keys of one project come first (ties by id), as (name, owner, amount); `none` may be one."""
    amounts = {
        ("proj_a", "key_alice"): D("2"),
        ("proj_a", "key_bot"): D("9"),
        ("proj_a", NO_API_KEY): D("4"),
        ("proj_a", "key_anon"): D("2"),
        ("proj_b", "key_other"): D("100"),
    }
    assert top_keys("proj_a", amounts, KEYS, 3) == [
        ("Batch jobs", "service account checkout-bot", D("9")),
        ("no API key", "", D("4")),
        ("Checkout service", "Alice Example", D("2")),
    ]
    assert len(top_keys("proj_a", amounts, KEYS, 10)) == 4


def test_top_keys_leave_out_zero_and_credits() -> None:
    """Keys without positive spend today are no driver of it: zero, 0E-6176 and credits are left out."""
    amounts = {
        ("proj_a", "key_alice"): D("0"),
        ("proj_a", "key_bot"): TINY_ZERO,
        ("proj_a", "key_anon"): D("-1"),
        ("proj_a", "key_gone"): D("0.01"),
    }
    assert top_keys("proj_a", amounts, KEYS, 5) == [("key_gone", "", D("0.01"))]
    assert top_keys("proj_x", amounts, KEYS, 5) == []


def test_top_keys_order_long_decimals_exactly() -> None:
    """Amounts differing only past the 28th digit are ordered by amount, not taken for a tie broken by id."""
    amounts = {("proj_a", "key_a"): LONG, ("proj_a", "key_b"): LONG_PLUS}
    assert [amount for _, _, amount in top_keys("proj_a", amounts, KEYS, 2)] == [LONG_PLUS, LONG]
