"""Spend by API key: which keys get a series of their own, and what they are called.

Labels stay bounded: per project, the `top` keys with the most spend over the window the cycle holds (30 days)
keep their own series and the rest are summed into one `other` series, so a project with 5,000 keys exports at
most `top` + 2 (spend outside keys, `none`, always keeps its own). The ranking spans the window, not the day, so
a key does not hop between its own series and `other` from one day to the next. Amounts are summed exactly:
the series of a project add up to its figure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from decimal import Decimal

from openai_cost_exporter.core.models import NO_API_KEY, ZERO, ApiKey
from openai_cost_exporter.core.money import exact_sum

#: `api_key_id` of the series that sums a project's keys beyond the cap.
OTHER_KEYS = "other"
KeyAmounts = Mapping[tuple[str, str], Decimal]  # (project_id, api_key_id) -> amount
KeyDays = Mapping[dt.date, KeyAmounts]


def kept_keys(days: KeyDays, top: int) -> dict[str, frozenset[str]]:
    """Per project, its `top` keys by spend over these days (ties by id), spend outside keys not counted."""
    spend: dict[str, dict[str, list[Decimal]]] = {}
    for amounts in days.values():
        for (pid, key_id), amount in amounts.items():
            if key_id != NO_API_KEY:
                spend.setdefault(pid, {}).setdefault(key_id, []).append(amount)
    kept = {}
    for pid, keys in spend.items():
        totals = {key_id: exact_sum(values) for key_id, values in keys.items()}
        # copy_negate, not `-`: unary minus rounds to 28 digits, and totals differing beyond them would tie
        ranked = sorted(totals, key=lambda key_id: (totals[key_id].copy_negate(), key_id))
        kept[pid] = frozenset(ranked[:top])
    return kept


def capped(amounts: KeyAmounts, kept: Mapping[str, Collection[str]]) -> dict[tuple[str, str], Decimal]:
    """The amounts with every key outside its project's `kept` summed into that project's OTHER_KEYS."""
    series: dict[tuple[str, str], list[Decimal]] = {}
    for (pid, key_id), amount in amounts.items():
        own = key_id == NO_API_KEY or key_id in kept.get(pid, ())
        series.setdefault((pid, key_id if own else OTHER_KEYS), []).append(amount)
    return {key: exact_sum(values) for key, values in sorted(series.items())}


def key_name(key_id: str, keys: Mapping[str, ApiKey]) -> str:
    """How a key is shown: its name; its id when it has none (deleted since); what `none` and `other` mean."""
    if key_id == NO_API_KEY:
        return "no API key"
    if key_id == OTHER_KEYS:
        return "other keys"
    key = keys.get(key_id)
    return key.name if key is not None else key_id


def key_owner(key_id: str, keys: Mapping[str, ApiKey]) -> str:
    """Who owns a key, e.g. `service account checkout-bot`; "" when unknown."""
    key = keys.get(key_id)
    if key is None or not key.owner:
        return ""
    return f"service account {key.owner}" if key.owner_type == "service_account" else key.owner


def top_keys(
    subject_id: str, amounts: KeyAmounts, keys: Mapping[str, ApiKey], count: int
) -> list[tuple[str, str, Decimal]]:
    """(name, owner, amount) of the largest keys of a project today, spend outside keys included."""
    mine = [(key_id, amount) for (pid, key_id), amount in amounts.items() if pid == subject_id and amount > ZERO]
    mine.sort(key=lambda item: (item[1].copy_negate(), item[0]))
    return [(key_name(key_id, keys), key_owner(key_id, keys), amount) for key_id, amount in mine[:count]]
