"""Reading the per-project listings: API keys (`/organization/projects/{id}/api_keys`) and hard spend limits.

Shapes are those of openai-admin-openapi.yaml (§9). `threshold_amount` is in cents; a body without it (the API
answers an empty object, or 404, for a project without a limit) means "no limit".
"""

from __future__ import annotations

from decimal import Decimal

from openai_cost_exporter.core.errors import MalformedResponse
from openai_cost_exporter.core.models import ApiKey, SpendLimit
from openai_cost_exporter.core.money import MONEY_CONTEXT
from openai_cost_exporter.sources.openai.responses import Json, _list, _object, clean_text

_CENTS = Decimal(100)


def parse_api_keys(body: Json, where: str) -> list[ApiKey]:
    """One page of a project's API keys; a key without a name is named by its id."""
    keys = []
    for index, raw in enumerate(_list(body, "data", where)):
        key_where = f"{where}, key {index}"
        item = _object(raw, key_where)
        key_id = item.get("id")
        if not isinstance(key_id, str) or not key_id:
            raise MalformedResponse(f"{key_where}: id is {key_id!r}, not a string")
        name = item.get("name")
        owner_type, owner = _owner(item.get("owner"))
        key_id = clean_text(key_id)
        keys.append(ApiKey(key_id, clean_text(name) if isinstance(name, str) and name else key_id, owner, owner_type))
    return keys


def _owner(raw: object) -> tuple[str, str]:
    """(type, name) of a key's owner: a user or a service account; ("", "") when the API names none."""
    if not isinstance(raw, dict):
        return "", ""
    kind = raw.get("type")
    kind = kind if isinstance(kind, str) else ""
    who = raw.get(kind) if kind in ("user", "service_account") else None
    if not isinstance(who, dict):
        return clean_text(kind), ""
    for field in ("name", "email", "id"):
        value = who.get(field)
        if isinstance(value, str) and value:
            return clean_text(kind), clean_text(value)
    return clean_text(kind), ""


def parse_spend_limit(body: Json, where: str) -> SpendLimit | None:
    """A hard spend limit in USD, or None when the body has none (an empty object)."""
    cents = body.get("threshold_amount")
    if cents is None:
        return None
    if not isinstance(cents, int) or isinstance(cents, bool) or cents < 0:
        raise MalformedResponse(f"{where}: threshold_amount is {cents!r}, not a whole number of cents")
    currency = body.get("currency", "USD")
    if not isinstance(currency, str) or currency.upper() != "USD":
        raise MalformedResponse(f"{where}: currency is {currency!r}, not USD")
    enforcement = body.get("enforcement")
    status = enforcement.get("status") if isinstance(enforcement, dict) else None
    threshold = MONEY_CONTEXT.divide(Decimal(cents), _CENTS)  # exact: `/` would round to 28 digits
    return SpendLimit(threshold, clean_text(status) if isinstance(status, str) and status else "unknown")
