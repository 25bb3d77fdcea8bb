"""What the per-project listings said, in the shared state file: API key names and owners, hard spend limits.

Each listing (the keys of one project, the spend limit of the organization or of one project) is stored with the
time it was made, so a listing is asked again only once it is older than the names' refresh interval, and a
restart asks nothing that is still fresh. Keys are upserted: a key deleted since keeps the name it had, like a
deleted project. A spend limit listing without a limit stores the listing time and no limit.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from decimal import Decimal

from openai_cost_exporter.core.models import ApiKey, SpendLimit
from openai_cost_exporter.core.transaction import transaction

#: `project_id` of the organization's own spend limit.
ORGANIZATION_SCOPE = ""
KEYS = "api_keys"
LIMIT = "spend_limit"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS api_keys (
        project_id TEXT NOT NULL, api_key_id TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL,
        owner_type TEXT NOT NULL, PRIMARY KEY (project_id, api_key_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS spend_limits (
        project_id TEXT PRIMARY KEY, threshold_usd TEXT NOT NULL, status TEXT NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS listings (
        kind TEXT NOT NULL, project_id TEXT NOT NULL, listed_at TEXT NOT NULL,
        PRIMARY KEY (kind, project_id)) WITHOUT ROWID""",
)


class DirectoryStore:
    """API keys per project and hard spend limits, with when each was last listed."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        with transaction(conn):
            for statement in _SCHEMA:
                conn.execute(statement)

    def save_keys(
        self, project_id: str, keys: Iterable[ApiKey], listed_at: dt.datetime, unlisted: Iterable[str] = ()
    ) -> None:
        """Upsert the listed keys of a project (keys not listed keep what they had) and the listing time.

        `unlisted` are ids that spend but were not listed (deleted since): kept by id, so that no later cycle, in
        this process or the next, lists the project again for them before its refresh is due."""
        with transaction(self._conn):
            self._conn.executemany(
                "INSERT OR IGNORE INTO api_keys (project_id, api_key_id, name, owner, owner_type)"
                " VALUES (?, ?, ?, '', '')",
                ((project_id, key_id, key_id) for key_id in unlisted),
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO api_keys (project_id, api_key_id, name, owner, owner_type)"
                " VALUES (?, ?, ?, ?, ?)",
                ((project_id, key.id, key.name, key.owner, key.owner_type) for key in keys),
            )
            self._listed(KEYS, project_id, listed_at)

    def save_limit(self, project_id: str | None, limit: SpendLimit | None, listed_at: dt.datetime) -> None:
        """Store the spend limit of the organization (None) or of a project; None: it has none."""
        scope = ORGANIZATION_SCOPE if project_id is None else project_id
        with transaction(self._conn):
            if limit is None:
                self._conn.execute("DELETE FROM spend_limits WHERE project_id = ?", (scope,))
            else:
                self._conn.execute(
                    "INSERT OR REPLACE INTO spend_limits (project_id, threshold_usd, status) VALUES (?, ?, ?)",
                    (scope, str(limit.threshold_usd), limit.status),
                )
            self._listed(LIMIT, scope, listed_at)

    def mark_listed(self, kind: str, project_id: str | None, listed_at: dt.datetime) -> None:
        """Note a listing that failed as made: it is asked again at the next refresh, not every cycle."""
        with transaction(self._conn):
            self._listed(kind, ORGANIZATION_SCOPE if project_id is None else project_id, listed_at)

    def keys(self) -> dict[str, ApiKey]:
        """Every key ever listed, by id (key ids are unique across the organization)."""
        cursor = self._conn.execute("SELECT api_key_id, name, owner, owner_type FROM api_keys")
        return {key_id: ApiKey(key_id, name, owner, owner_type) for key_id, name, owner, owner_type in cursor}

    def limits(self) -> dict[str | None, SpendLimit]:
        """Hard spend limits by project id; the organization's under None."""
        cursor = self._conn.execute("SELECT project_id, threshold_usd, status FROM spend_limits")
        return {
            (None if scope == ORGANIZATION_SCOPE else scope): SpendLimit(Decimal(threshold), status)
            for scope, threshold, status in cursor
        }

    def listed(self, kind: str) -> dict[str | None, dt.datetime]:
        """When each listing of `kind` was last made; the organization's under None."""
        cursor = self._conn.execute("SELECT project_id, listed_at FROM listings WHERE kind = ?", (kind,))
        return {(None if scope == ORGANIZATION_SCOPE else scope): dt.datetime.fromisoformat(at) for scope, at in cursor}

    def _listed(self, kind: str, scope: str, listed_at: dt.datetime) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO listings (kind, project_id, listed_at) VALUES (?, ?, ?)",
            (kind, scope, listed_at.isoformat()),
        )
