"""The projects endpoint of the fake Admin API: projects as the Projects API sends them, paged by `after`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from openai_cost_exporter.fake.http import Params, bad_request, limit_param, one_param
from openai_cost_exporter.fake.org import FakeProject


def project_json(p: FakeProject) -> dict[str, Any]:
    """A project as the Projects API sends it."""
    return {
        "id": p.id,
        "object": "organization.project",
        "name": p.name,
        "created_at": p.created_at,
        "archived_at": p.archived_at,
        "status": p.status,
        "external_key_id": None,
    }


class ProjectsListing:
    """The organization's projects in the API's order (created_at, then id); `page()` answers one request."""

    def __init__(self, projects: Iterable[FakeProject]) -> None:
        self._ordered = sorted(projects, key=lambda p: (p.created_at, p.id))
        self._position = {p.id: i for i, p in enumerate(self._ordered)}

    def page(self, params: Params) -> dict[str, Any]:
        """One page of `GET /organization/projects`; 400 `Reply` on a bad parameter."""
        limit = limit_param(params, 20, 100)
        include = (one_param(params, "include_archived") or "false").lower()
        if include not in ("true", "false"):
            raise bad_request("Invalid value for 'include_archived': expected a boolean.", "include_archived")
        after = one_param(params, "after")
        start = 0
        if after is not None:
            if after not in self._position:
                raise bad_request(f"No project found with id {after[:40]!r}.", "after")
            start = self._position[after] + 1
        rest = [p for p in self._ordered[start:] if include == "true" or not p.archived]
        page = rest[:limit]
        return {
            "object": "list",
            "data": [project_json(p) for p in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(rest) > limit,
        }
