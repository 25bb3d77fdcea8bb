"""The one transaction helper of the state file: every writer (ledger, usage, listings, outbox) goes through it."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count

log = logging.getLogger(__name__)

_savepoints = count(1)
#: This process's writers take turns here before BEGIN IMMEDIATE. SQLite's own busy handler polls, sleeping up to
#: 100 ms between tries, so a thread that commits and begins again at once (the usage fetch storing page after
#: page) kept the costs stage of the same cycle waiting for seconds; a lock hands the turn over on release.
_writers = threading.RLock()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block atomically: BEGIN IMMEDIATE ... COMMIT, or a SAVEPOINT when already in a transaction.

    A commit that fails (SQLITE_FULL on a full disk) may leave the transaction open, and a later commit would then
    carry out writes the caller was told had failed: it is rolled back before the error goes on."""
    if conn.in_transaction:
        name = f"sp{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    # IMMEDIATE takes the write lock up front, so writers wait instead of deadlocking: this process's on `_writers`,
    # another process's (a `report` beside the service) on busy_timeout.
    with _writers:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.commit()
        except sqlite3.Error:
            _rollback(conn)
            raise


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo what a failed commit left open, if anything."""
    if not conn.in_transaction:
        return
    try:
        conn.rollback()
    except sqlite3.Error as err:  # the commit's error, raised next, says more than this one
        log.debug("rolling back after a failed commit failed too: %s", err)
