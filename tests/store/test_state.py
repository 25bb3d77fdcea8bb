"""The state file: identity, version and integrity guards, configuration, transactions."""

from __future__ import annotations

import os
import pathlib
import re
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest

from openai_cost_exporter.core.errors import StateError
from openai_cost_exporter.core.transaction import transaction
from openai_cost_exporter.store.state import (
    APPLICATION_ID,
    CACHE_KIB,
    SCHEMA_VERSION,
    lock_state,
    open_state,
)


def _pragma(conn: sqlite3.Connection, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def _raw(path: pathlib.Path, *statements: str) -> None:
    """Run statements on `path` with plain sqlite3, the way another application would."""
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_new_file_is_created_and_stamped(tmp_path: pathlib.Path) -> None:
    """A new state file gets its parent directories, our application_id, the schema version and WAL."""
    path = tmp_path / "a" / "b" / "state.sqlite3"
    conn = open_state(path)
    assert path.is_file()
    assert _pragma(conn, "application_id") == APPLICATION_ID
    assert _pragma(conn, "user_version") == SCHEMA_VERSION
    assert _pragma(conn, "journal_mode") == "wal"
    assert _pragma(conn, "synchronous") == 1  # NORMAL
    assert _pragma(conn, "busy_timeout") > 0
    conn.close()


def test_reopen_keeps_data(tmp_path: pathlib.Path) -> None:
    """Closing and reopening the state file keeps what was written (a restart loses nothing)."""
    path = tmp_path / "state.sqlite3"
    conn = open_state(path)
    conn.execute("CREATE TABLE IF NOT EXISTS notes (text TEXT)")
    conn.execute("INSERT INTO notes VALUES ('kept')")
    conn.close()
    conn = open_state(path)
    assert conn.execute("SELECT text FROM notes").fetchall() == [("kept",)]
    conn.close()


def test_empty_file_is_initialised(tmp_path: pathlib.Path) -> None:
    """A zero-byte file (e.g. created by `touch`) is an empty database that we may initialise."""
    path = tmp_path / "state.sqlite3"
    path.touch()
    conn = open_state(path)
    assert _pragma(conn, "application_id") == APPLICATION_ID
    conn.close()


def test_older_version_of_ours_is_upgraded(tmp_path: pathlib.Path) -> None:
    """A file of ours with an older user_version is brought to the current schema version."""
    path = tmp_path / "state.sqlite3"
    _raw(path, f"PRAGMA application_id = {APPLICATION_ID}", "CREATE TABLE cost_rows (x)")
    conn = open_state(path)
    assert _pragma(conn, "user_version") == SCHEMA_VERSION
    conn.close()


def _text_file(path: pathlib.Path) -> None:
    path.write_text("day,project,cost\n2026-11-01,proj_a,1.00\n" * 50)


def _short_garbage(path: pathlib.Path) -> None:
    path.write_bytes(b"\x00\x01garbage")


def _foreign_without_id(path: pathlib.Path) -> None:
    _raw(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO customers VALUES (1, 'x')")


def _foreign_with_id(path: pathlib.Path) -> None:
    _raw(path, "PRAGMA application_id = 42", "CREATE TABLE things (x)")


def _foreign_id_only(path: pathlib.Path) -> None:
    _raw(path, "PRAGMA application_id = 1234")


def _versioned_without_id(path: pathlib.Path) -> None:
    _raw(path, "PRAGMA user_version = 7")


def _newer(path: pathlib.Path) -> None:
    open_state(path).close()
    _raw(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


def _corrupt_header(path: pathlib.Path) -> None:
    _corrupt(path, page=2, junk=b"\xff" * 64)  # a b-tree page with an impossible header: quick_check reports it


def _corrupt_body(path: pathlib.Path) -> None:
    _corrupt(path, page=3, junk=b"\x00\x01" * 2048)  # garbage cells: SQLite raises "malformed" while checking


def _corrupt(path: pathlib.Path, page: int, junk: bytes) -> None:
    conn = open_state(path)
    conn.execute("CREATE TABLE filler (x TEXT)")
    conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 100,) for _ in range(2000)])
    conn.close()
    data = bytearray(path.read_bytes())
    offset = (page - 1) * _page_size(path)
    data[offset : offset + len(junk)] = junk
    path.write_bytes(bytes(data))


def _page_size(path: pathlib.Path) -> int:
    return int.from_bytes(path.read_bytes()[16:18], "big")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_text_file, "not a SQLite database"),
        (_short_garbage, "not a SQLite database"),
        (_foreign_without_id, "another application"),
        (_foreign_with_id, "another application"),
        (_foreign_id_only, "another application"),
        (_versioned_without_id, "another application"),
        (_newer, "newer"),
        (_corrupt_header, "corrupt"),
        (_corrupt_body, "corrupt"),
    ],
)
def test_unusable_file_is_refused_and_left_alone(
    tmp_path: pathlib.Path, make: Callable[[pathlib.Path], None], words: str
) -> None:
    """Not-a-database, foreign, newer and corrupt files raise StateError naming the path, and stay byte-identical."""
    path = tmp_path / "state.sqlite3"
    make(path)
    before = path.read_bytes()
    with pytest.raises(StateError) as caught:
        open_state(path)
    message = str(caught.value)
    assert words in message
    assert str(path) in message
    assert "--state-dir" in message
    assert "\n" not in message
    assert path.read_bytes() == before


@pytest.mark.parametrize("kind", ["directory", "parent-is-file"])
def test_unopenable_path_raises_state_error(tmp_path: pathlib.Path, kind: str) -> None:
    """A path that is a directory, or whose parent is a file, raises StateError rather than OSError."""
    if kind == "directory":
        path = tmp_path / "state.sqlite3"
        path.mkdir()
    else:
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "state.sqlite3"
    with pytest.raises(StateError, match=re.escape(str(path))):
        open_state(path)


def test_transaction_commits_or_rolls_back(tmp_path: pathlib.Path) -> None:
    """`transaction` commits a block that succeeds and undoes one that raises."""
    conn = open_state(tmp_path / "state.sqlite3")
    conn.execute("CREATE TABLE t (x INTEGER)")
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert not conn.in_transaction
    conn.close()


def test_nested_transaction_rolls_back_only_the_inner_block(tmp_path: pathlib.Path) -> None:
    """A nested `transaction` is a savepoint: its failure keeps the outer block's writes."""
    conn = open_state(tmp_path / "state.sqlite3")
    conn.execute("CREATE TABLE t (x INTEGER)")
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError), transaction(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("boom")
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (3)")
    assert conn.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (3,)]
    conn.close()


def test_connection_is_usable_from_another_thread(tmp_path: pathlib.Path) -> None:
    """The connection may be used from the service's worker thread (check_same_thread is off)."""
    conn = open_state(tmp_path / "state.sqlite3")
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(_pragma(conn, "application_id")))
    worker.start()
    worker.join()
    assert results == [APPLICATION_ID]
    conn.close()


def test_writers_of_one_process_take_turns_without_the_busy_handler(tmp_path: pathlib.Path) -> None:
    """A second connection's transaction waits for the first to commit, even with SQLite's busy timeout at 0."""
    path = tmp_path / "state.sqlite3"
    first, second = open_state(path), open_state(path)
    first.execute("CREATE TABLE t (x INTEGER)")
    second.execute("PRAGMA busy_timeout = 0")  # without the turn, its BEGIN IMMEDIATE fails at once: locked
    outcome: list[object] = []
    asking = threading.Event()

    def write_second() -> None:
        asking.set()
        try:
            with transaction(second):
                second.execute("INSERT INTO t VALUES (2)")
            outcome.append("committed")
        except sqlite3.OperationalError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=write_second)
    with transaction(first):
        first.execute("INSERT INTO t VALUES (1)")
        worker.start()
        asking.wait()
        worker.join(timeout=0.5)  # it cannot end while this transaction holds the turn
        assert worker.is_alive() and not outcome
    worker.join()
    assert outcome == ["committed"]
    assert first.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    first.close()
    second.close()


def test_each_connection_caches_a_megabyte_of_pages(tmp_path: pathlib.Path) -> None:
    """The state connection caches CACHE_KIB of pages (PRAGMA cache_size in KiB is negative)."""
    conn = open_state(tmp_path / "state.sqlite3")
    assert _pragma(conn, "cache_size") == -CACHE_KIB
    conn.close()


def test_the_sender_lock_is_exclusive_until_closed(tmp_path: pathlib.Path) -> None:
    """A second lock on one state file is a StateError naming the holder's PID; once released it can be taken."""
    path = tmp_path / "new" / "state.sqlite3"
    first = lock_state(path)
    try:
        assert (tmp_path / "new" / "state.sqlite3.lock").read_text(encoding="utf-8") == f"{os.getpid()}\n"
        held = rf"\(pid {os.getpid()}\) is already running on state dir {re.escape(str(path.parent))}:"
        with pytest.raises(StateError, match=held):
            lock_state(path)
    finally:
        first.close()
    lock_state(path).close()
