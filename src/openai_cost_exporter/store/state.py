"""The one embedded SQLite state file: open it, guard its identity, version and integrity.

Each module creates its own tables with `CREATE TABLE IF NOT EXISTS` on the connection returned here; this
module only makes sure the file is ours, not from a newer release and not corrupt. It never resets or deletes
a file it refuses: the operator decides what to do with it.

`lock_state(path)` takes the sender's lock beside the file: one process per state dir may fetch, push and
alert (`run`, `demo`, `backfill`); readers (`report --offline`, `backtest`) do not take it.

The connection is in autocommit mode (`isolation_level=None`): single statements commit at once, and
`transaction(conn)` groups several into one atomic unit.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pathlib
import sqlite3
from typing import IO

from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.errors import StateDirBusy, StateError
from openai_cost_exporter.core.transaction import transaction

log = logging.getLogger(__name__)

#: `PRAGMA application_id` of our files: "OCEX" in ASCII, so `file(1)` and other tools can tell them apart.
APPLICATION_ID = 0x4F434558
#: `PRAGMA user_version`: bump with a migration whenever a module changes the layout of its tables.
SCHEMA_VERSION = 1
#: Seconds a writer waits for a lock held by another connection (a `report` run next to the service).
BUSY_TIMEOUT_S = 10.0
#: KiB of database pages each connection caches (PRAGMA cache_size).
CACHE_KIB = 1000
#: File name inside `--state-dir`.
STATE_FILE = defaults.STATE_FILE

#: Suffix of the lock file beside the state file (`state.sqlite3.lock`); it holds the owner's PID, for the message.
LOCK_SUFFIX = ".lock"

_ADVICE = "move it away or point --state-dir elsewhere"


def open_state(path: pathlib.Path) -> sqlite3.Connection:
    """Open (creating if needed) the state file at `path`; raise StateError if it is not ours or not sound."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The service serialises every access to the connection (one cycle at a time, HTTP handlers read
        # snapshots, not the database), so sharing it across threads is safe.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StateError(f"cannot open state file {path}: {exc}; {_ADVICE}") from exc
    try:
        _guard(conn, path)
        _configure(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def lock_state(path: pathlib.Path) -> IO[str]:
    """Hold the exclusive lock beside the state file at `path` until the returned file is closed (or the process
    ends); raise StateDirBusy if another process holds it, StateError if the lock file cannot be used.

    Two processes on one state dir would each decide and send the same alert (issue 11). `flock` is released by
    the kernel when the process dies, so a SIGKILL never leaves a stale lock behind.
    """
    lock_path = path.with_name(path.name + LOCK_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = lock_path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise StateError(f"cannot open lock file {lock_path}: {exc.strerror}; {_ADVICE}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock.seek(0)
        owner = lock.read().strip()
        lock.close()
        if isinstance(exc, BlockingIOError):
            pid = f" (pid {owner})" if owner.isdigit() else ""
            raise StateDirBusy(
                f"another openai-cost-exporter{pid} is already running on state dir {path.parent}: stop it, "
                "or give this one its own --state-dir",
                state_dir=str(path.parent),
                pid=int(owner) if owner.isdigit() else None,
            ) from None
        raise StateError(f"cannot lock {lock_path}: {exc.strerror}; {_ADVICE}") from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _guard(conn: sqlite3.Connection, path: pathlib.Path) -> None:
    """Check identity, version and integrity before anything is written to the file."""
    try:
        app_id = _pragma_int(conn, "application_id")
        version = _pragma_int(conn, "user_version")
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StateError(f"state file {path} is not a SQLite database ({exc}); {_ADVICE}") from exc
    if app_id == 0 and tables == 0 and version == 0:
        _initialise(conn, path)
        return
    if app_id != APPLICATION_ID:
        raise StateError(
            f"state file {path} belongs to another application (application_id={app_id}, {tables} schema "
            f"objects); {_ADVICE}"
        )
    if version > SCHEMA_VERSION:
        raise StateError(
            f"state file {path} has schema version {version}, newer than this release understands "
            f"({SCHEMA_VERSION}); upgrade openai-cost-exporter, or {_ADVICE}"
        )
    _check_integrity(conn, path)
    if version < SCHEMA_VERSION:
        _upgrade(conn, path, version)


def _initialise(conn: sqlite3.Connection, path: pathlib.Path) -> None:
    """Stamp a brand-new (empty) database as ours, in one transaction so a crash leaves it empty."""
    log.info("initialising new state file %s", path)
    with transaction(conn):
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


def _upgrade(conn: sqlite3.Connection, path: pathlib.Path, version: int) -> None:
    """Bring an older file of ours to SCHEMA_VERSION (1 is the first layout: nothing to migrate yet)."""
    log.info("upgrading state file %s from schema %s to %s", path, version, SCHEMA_VERSION)
    with transaction(conn):
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


def _check_integrity(conn: sqlite3.Connection, path: pathlib.Path) -> None:
    """`PRAGMA quick_check`: reads every page but skips index cross-checks: ~0.3 s for a 1M-row ledger."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        summary = "; ".join(" ".join(problem.split()) for problem in problems)  # one line, for the logs
        raise StateError(f"state file {path} is corrupt ({summary}); {_ADVICE}")


def _configure(conn: sqlite3.Connection) -> None:
    """WAL lets `report` read while the service writes; NORMAL sync is durable enough in WAL mode."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000):d}")
    conn.execute("PRAGMA foreign_keys = ON")
    # 1 MB of pages, not SQLite's 2 MB: a cycle reads its month once, in key order, and the kernel caches the
    # file anyway; the other megabyte was 2% of a cold cycle's peak (issue 12).
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB:d}")


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    value = conn.execute(f"PRAGMA {name}").fetchone()[0]
    return int(value)
