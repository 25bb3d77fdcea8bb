"""The API keys endpoint of the fake Admin API: `GET /organization/projects/{project_id}/api_keys`.

Paged by `after` (a key id) like the projects listing, `limit` 1..100 (default 20). Deleted keys are not listed,
though their past spend stays in costs (fake/keys.py). `owner_project_access` is checked: every simulated owner
has access to the project, so `inactive` lists nothing and `active`, `any` or none list every key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openai_cost_exporter.fake.http import Params, bad_request, limit_param, one_param
from openai_cost_exporter.fake.keys import FakeApiKey

_ACCESS = ("active", "inactive", "any")


def api_key_json(key: FakeApiKey) -> dict[str, Any]:
    """A key as the API lists it (`organization.project.api_key`)."""
    owner = key.owner
    who: dict[str, Any] = {"id": owner.id, "name": owner.name, "created_at": owner.created_at, "role": owner.role}
    if owner.email is not None:
        who["email"] = owner.email
    return {
        "object": "organization.project.api_key",
        "redacted_value": key.redacted_value,
        "name": key.name,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "id": key.id,
        "owner_project_access": "active",
        "owner": {"type": owner.type, owner.type: who},
    }


def api_keys_page(keys: Sequence[FakeApiKey], params: Params, cap: int = 0) -> dict[str, Any]:
    """One page of a project's listed keys (at most `cap` when set: a server may send fewer than asked); 400
    `Reply` on a bad parameter."""
    limit = limit_param(params, 20, 100)
    limit = min(limit, cap) if cap > 0 else limit
    access = one_param(params, "owner_project_access")
    if access is not None and access not in _ACCESS:
        raise bad_request(
            "Invalid value for 'owner_project_access': expected one of 'active', 'inactive', 'any'.",
            "owner_project_access",
        )
    listed = [] if access == "inactive" else list(keys)
    after = one_param(params, "after")
    start = 0
    if after is not None:
        ids = [k.id for k in listed]
        if after not in ids:
            raise bad_request(f"No API key found with id {after[:40]!r}.", "after")
        start = ids.index(after) + 1
    page = listed[start : start + limit]
    return {
        "object": "list",
        "data": [api_key_json(k) for k in page],
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
        "has_more": len(listed) - start > limit,
    }
