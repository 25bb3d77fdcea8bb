"""The background listings: the worker pool (`Directory`) and the cycle's side of it (`DirectoryStage`), with a fake
source in-process and a real state file."""

from __future__ import annotations

import datetime as dt
import logging
import pathlib
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.errors import APIUnavailable, ExporterError, ScopeError
from openai_cost_exporter.core.models import NO_API_KEY, ApiKey, CostRow, Project, SpendLimit
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.figures.api_keys import key_name
from openai_cost_exporter.ingest import listings as listings_module
from openai_cost_exporter.ingest.directory import Directory, DirectoryStage, Listing, Task
from openai_cost_exporter.store.directory_store import KEYS, LIMIT, DirectoryStore
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state

NOW = dt.datetime(2026, 12, 10, 12, tzinfo=dt.UTC)
TODAY = NOW.date()
START = TODAY - dt.timedelta(days=29)
REFRESH = dt.timedelta(hours=6)
WAIT = 5.0  # seconds a test waits at most for the workers; they take milliseconds
DIRECTORY_LOGGER = "openai_cost_exporter.ingest.directory"

ALICE = ApiKey("key_alice", "Checkout service", "Alice Example", "user")
BOT = ApiKey("key_bot", "Batch jobs", "checkout-bot", "service_account")
OLD = ApiKey("key_old", "Old key", "", "")
LIMIT_A = SpendLimit(Decimal("500"), "inactive")
ORG_LIMIT = SpendLimit(Decimal("10000"), "inactive")


class Source:
    """A fake Admin API for the listings: answers from dicts, records every call, fails where told to."""

    def __init__(
        self,
        keys: dict[str, list[ApiKey]] | None = None,
        limits: dict[str | None, SpendLimit] | None = None,
    ) -> None:
        self.keys = keys or {}
        self.limits = limits or {}
        self.failures: dict[Task, Exception] = {}
        self.calls: list[Task] = []
        self.threads: set[threading.Thread] = set()
        self.gate = threading.Event()  # cleared: every listing waits until it is set
        self.gate.set()
        self.entered = threading.Event()  # set once a listing has started
        self._lock = threading.Lock()

    def list_api_keys(self, project_id: str) -> list[ApiKey]:
        self._enter((KEYS, project_id))
        return list(self.keys.get(project_id, []))

    def spend_limit(self, project_id: str | None) -> SpendLimit | None:
        self._enter((LIMIT, project_id))
        return self.limits.get(project_id)

    def _enter(self, task: Task) -> None:
        with self._lock:
            self.calls.append(task)
            self.threads.add(threading.current_thread())
        self.entered.set()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        failure = self.failures.get(task)
        if failure is not None:
            raise failure


def settle(directory: Directory) -> None:
    """Wait (boundedly) until no listing is pending."""
    tick = threading.Event()
    for _ in range(int(WAIT * 1000)):
        if directory.pending == 0:
            return
        tick.wait(0.001)
    raise AssertionError(f"listings still pending after {WAIT} s: {directory!r}")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def source() -> Source:
    return Source(keys={"proj_a": [ALICE, BOT], "proj_old": [OLD]}, limits={"proj_a": LIMIT_A, None: ORG_LIMIT})


@pytest.fixture
def directory(source: Source, clock: FrozenClock) -> Iterator[Directory]:
    pool = Directory(source, clock, workers=2, rate=None)
    yield pool
    source.gate.set()
    pool.stop()


def test_ask_dedups_pending_tasks(source: Source, directory: Directory) -> None:
    """A listing already queued or in progress is not queued twice; once done it may be asked again."""
    source.gate.clear()
    assert directory.ask([(KEYS, "proj_a"), (LIMIT, None)]) == 2
    assert directory.ask([(KEYS, "proj_a"), (LIMIT, None), (LIMIT, "proj_a")]) == 1
    assert directory.ask([(LIMIT, "proj_a")], urgent=True) == 0
    assert directory.pending == 3
    source.gate.set()
    settle(directory)
    assert sorted(source.calls, key=str) == sorted([(KEYS, "proj_a"), (LIMIT, None), (LIMIT, "proj_a")], key=str)
    assert directory.ask([(KEYS, "proj_a")]) == 1
    settle(directory)
    assert source.calls.count((KEYS, "proj_a")) == 2


def test_take_returns_each_arrived_listing_once(source: Source, directory: Directory, clock: FrozenClock) -> None:
    """Arrived listings are handed over once, with what they brought and when they were made."""
    directory.ask([(KEYS, "proj_a"), (LIMIT, None), (LIMIT, "proj_none")])
    settle(directory)
    arrived = {listing.task: listing for listing in directory.take()}
    assert arrived == {
        (KEYS, "proj_a"): Listing((KEYS, "proj_a"), NOW, keys=(ALICE, BOT)),
        (LIMIT, None): Listing((LIMIT, None), NOW, limit=ORG_LIMIT),
        (LIMIT, "proj_none"): Listing((LIMIT, "proj_none"), NOW, limit=None),
    }
    assert directory.take() == []


def test_urgent_returns_once_its_listings_are_done(source: Source, directory: Directory) -> None:
    """`urgent` waits for the listings it asks, and they have arrived when it returns."""
    directory.urgent([(KEYS, "proj_a")], timeout=WAIT)
    assert [listing.task for listing in directory.take()] == [(KEYS, "proj_a")]


def test_urgent_gives_up_after_its_timeout(source: Source, directory: Directory) -> None:
    """A listing that hangs does not hold `urgent` past its timeout; it stays pending and arrives later."""
    source.gate.clear()
    directory.urgent([(KEYS, "proj_a")], timeout=0.01)
    assert directory.pending == 1
    assert directory.take() == []
    source.gate.set()
    settle(directory)
    assert [listing.task for listing in directory.take()] == [(KEYS, "proj_a")]


def test_urgent_listings_go_before_queued_ones(source: Source, clock: FrozenClock) -> None:
    """An urgent listing is made before the background ones queued ahead of it."""
    pool = Directory(source, clock, workers=1, rate=None)
    source.gate.clear()
    pool.ask([(LIMIT, "proj_1"), (LIMIT, "proj_2"), (LIMIT, "proj_3")])
    assert source.entered.wait(WAIT)  # the one worker is busy with the first
    pool.ask([(KEYS, "proj_a")], urgent=True)
    source.gate.set()
    settle(pool)
    pool.stop()
    assert source.calls == [(LIMIT, "proj_1"), (KEYS, "proj_a"), (LIMIT, "proj_2"), (LIMIT, "proj_3")]


@pytest.mark.parametrize("error", [APIUnavailable("GET x failed after 3 attempts"), ScopeError("HTTP 403")])
def test_a_failed_listing_arrives_with_its_error(source: Source, directory: Directory, error: ExporterError) -> None:
    """A listing that fails arrives as a Listing carrying the error, without keys or limit."""
    source.failures[(KEYS, "proj_a")] = error
    directory.urgent([(KEYS, "proj_a")], timeout=WAIT)
    assert directory.take() == [Listing((KEYS, "proj_a"), NOW, error=error)]


def test_an_unexpected_failure_does_not_end_the_worker(
    source: Source, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a listing is logged and arrives as an error; the same worker goes on with the next listing."""
    pool = Directory(source, clock, workers=1, rate=None)
    source.failures[(LIMIT, None)] = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger=DIRECTORY_LOGGER):
        pool.urgent([(LIMIT, None)], timeout=WAIT)
        pool.urgent([(LIMIT, "proj_a")], timeout=WAIT)
    pool.stop()
    failed, fine = pool.take()
    assert isinstance(failed.error, ExporterError)
    assert str(failed.error) == "RuntimeError: boom"
    assert fine == Listing((LIMIT, "proj_a"), NOW, limit=LIMIT_A)
    assert "listing spend_limit of the organization failed unexpectedly" in caplog.text


def test_workers_are_bounded_daemon_threads(source: Source, clock: FrozenClock) -> None:
    """Listings run on at most `workers` daemon threads, never on the caller's."""
    pool = Directory(source, clock, workers=2, rate=None)
    pool.ask([(LIMIT, f"proj_{n}") for n in range(20)])
    settle(pool)
    pool.stop()
    assert len(source.calls) == 20
    assert 1 <= len(source.threads) <= 2
    assert all(thread.daemon for thread in source.threads)
    assert threading.current_thread() not in source.threads


# The cycle's side, on a real state file.


@pytest.fixture
def conn(tmp_path: pathlib.Path) -> Iterator[sqlite3.Connection]:
    connection = open_state(tmp_path / "state.sqlite3")
    yield connection
    connection.close()


@pytest.fixture
def ledger(conn: sqlite3.Connection) -> Ledger:
    """Projects a (keys spend), b (only spend outside keys), c (a key at zero), old (archived, keys spend)."""
    book = Ledger(conn)
    book.save_projects(
        [Project("proj_a", "A"), Project("proj_b", "B"), Project("proj_c", "C"), Project("proj_old", "Old", True)],
        NOW,
    )
    rows = [
        CostRow(TODAY, "proj_a", None, Decimal("5"), "key_alice"),
        CostRow(TODAY, "proj_a", None, Decimal("1"), "key_bot"),
        CostRow(TODAY, "proj_a", None, Decimal("1"), NO_API_KEY),
        CostRow(TODAY, "proj_b", None, Decimal("2"), NO_API_KEY),
        CostRow(TODAY, "proj_c", None, Decimal("0"), "key_idle"),
        CostRow(TODAY, "proj_old", None, Decimal("3"), "key_old"),
    ]
    book.replace_days([TODAY], rows, NOW, by_key=True)
    return book


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def stage(directory: Directory, conn: sqlite3.Connection, registry: CollectorRegistry) -> DirectoryStage:
    return make_stage(directory, conn, registry)


def make_stage(
    directory: Directory,
    conn: sqlite3.Connection,
    registry: CollectorRegistry,
    *,
    api_keys: bool = True,
    spend_limits: bool = True,
) -> DirectoryStage:
    metrics = SelfMetrics(registry)
    return DirectoryStage(
        directory, DirectoryStore(conn), metrics, refresh=REFRESH, api_keys=api_keys, spend_limits=spend_limits
    )


def cycle(stage: DirectoryStage, directory: Directory, ledger: Ledger, now: dt.datetime) -> None:
    """One cycle's listings: store what arrived, ask what is missing, wait for it (a test does not race it)."""
    stage.refresh(ledger, now, START)
    settle(directory)


def errors(registry: CollectorRegistry, stage: str) -> float:
    value = registry.get_sample_value("openai_cost_exporter_errors_total", {"stage": stage})
    return value or 0.0


FIRST_CYCLE = {
    (LIMIT, None),
    (LIMIT, "proj_a"),
    (LIMIT, "proj_b"),
    (LIMIT, "proj_c"),
    (KEYS, "proj_a"),
    (KEYS, "proj_old"),  # archived: no limit to read, but its keys spent
}


def test_first_refresh_asks_limits_and_the_keys_of_projects_that_spend_by_key(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger
) -> None:
    """The organization's and every active project's limit, and keys wherever a key spends (not `none`, not 0)."""
    cycle(stage, directory, ledger, NOW)
    assert sorted(source.calls, key=str) == sorted(FIRST_CYCLE, key=str)
    assert len(source.calls) == len(FIRST_CYCLE)


def test_arrived_listings_are_stored(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger
) -> None:
    """What arrived is stored at the next refresh: key names by id, limits by project (None: the organization)."""
    cycle(stage, directory, ledger, NOW)
    assert stage.known_keys() == {}
    stage.store_arrived()
    assert stage.known_keys() == {"key_alice": ALICE, "key_bot": BOT, "key_old": OLD}
    assert stage.spend_limits() == {"proj_a": LIMIT_A, None: ORG_LIMIT}


def test_a_warm_cycle_asks_nothing(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger, clock: FrozenClock
) -> None:
    """Within the refresh interval, once the listings are stored, a cycle adds no request for names or limits."""
    cycle(stage, directory, ledger, NOW)
    stage.store_arrived()
    made = list(source.calls)
    for hours in (1, 3, 5):
        clock.current = NOW + dt.timedelta(hours=hours, minutes=59)
        stage.refresh(ledger, clock.now(), START)
        assert directory.pending == 0
        settle(directory)
    assert source.calls == made


def test_a_restart_asks_nothing_still_fresh(
    source: Source,
    directory: Directory,
    stage: DirectoryStage,
    ledger: Ledger,
    conn: sqlite3.Connection,
    clock: FrozenClock,
) -> None:
    """Listing times are kept in the state file: a new stage on it asks nothing within the interval."""
    cycle(stage, directory, ledger, NOW)
    stage.store_arrived()
    made = list(source.calls)
    clock.advance(dt.timedelta(hours=1))
    restarted = make_stage(directory, conn, CollectorRegistry())
    cycle(restarted, directory, ledger, clock.now())
    assert source.calls == made


def test_past_the_interval_everything_is_asked_again(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger, clock: FrozenClock
) -> None:
    """Once the refresh interval has passed since a listing, the next cycle asks it again, once."""
    cycle(stage, directory, ledger, NOW)
    stage.store_arrived()
    clock.current = NOW + REFRESH
    cycle(stage, directory, ledger, clock.now())
    stage.store_arrived()
    cycle(stage, directory, ledger, clock.now() + dt.timedelta(minutes=5))
    assert sorted(source.calls, key=str) == sorted([*FIRST_CYCLE, *FIRST_CYCLE], key=str)


def test_a_deleted_key_costs_one_extra_listing_not_one_per_cycle(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger, clock: FrozenClock
) -> None:
    """A spending key not listed (deleted) costs one more listing an interval, not one a cycle; it keeps its id."""
    ledger.replace_days(
        [TODAY],
        [
            CostRow(TODAY, "proj_a", None, Decimal("5"), "key_alice"),
            CostRow(TODAY, "proj_a", None, Decimal("2"), "key_gone"),
        ],
        NOW,
        by_key=True,
    )
    for minutes in (0, 30):
        cycle(stage, directory, ledger, NOW + dt.timedelta(minutes=minutes))
    listings = source.calls.count((KEYS, "proj_a"))
    assert 1 <= listings <= 2
    for minutes in range(60, 360, 30):
        cycle(stage, directory, ledger, NOW + dt.timedelta(minutes=minutes))
    stage.store_arrived()
    assert source.calls.count((KEYS, "proj_a")) == listings
    assert key_name("key_gone", stage.known_keys()) == "key_gone"
    assert key_name("key_alice", stage.known_keys()) == "Checkout service"


def test_a_new_key_within_the_interval_is_listed_once(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger, clock: FrozenClock
) -> None:
    """A key that starts spending after its project was listed is named by one more listing of that project."""
    cycle(stage, directory, ledger, NOW)
    stage.store_arrived()
    carol = ApiKey("key_carol", "Carol's key", "Carol", "user")
    source.keys["proj_a"] = [ALICE, BOT, carol]
    rows = [CostRow(TODAY, "proj_a", None, Decimal("1"), "key_carol"), CostRow(TODAY, "proj_b", None, Decimal("2"))]
    ledger.replace_days([TODAY], rows, NOW, by_key=True)
    for minutes in (30, 60, 90):
        cycle(stage, directory, ledger, NOW + dt.timedelta(minutes=minutes))
    stage.store_arrived()
    assert source.calls.count((KEYS, "proj_a")) == 2
    assert stage.known_keys()["key_carol"] == carol


def test_failures_are_counted_and_said_in_one_line_per_kind(
    source: Source,
    directory: Directory,
    stage: DirectoryStage,
    ledger: Ledger,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failed listings count an error of their stage and are said in one warning line per kind per refresh."""
    ledger.replace_days([TODAY], [CostRow(TODAY, "proj_b", None, Decimal("2"), "key_b")], NOW, by_key=True)
    source.failures[(KEYS, "proj_b")] = APIUnavailable("GET keys failed after 3 attempts: HTTP 503")
    source.failures[(LIMIT, "proj_a")] = APIUnavailable("GET a failed after 3 attempts: HTTP 503")
    source.failures[(LIMIT, "proj_b")] = APIUnavailable("GET b failed after 3 attempts: HTTP 503")
    cycle(stage, directory, ledger, NOW)
    with caplog.at_level(logging.WARNING, logger=DIRECTORY_LOGGER):
        stage.store_arrived()
    assert errors(registry, "api_keys") == 1
    assert errors(registry, "spend_limit") == 1
    lines = sorted(record.getMessage() for record in caplog.records)
    assert len(lines) == 2
    assert lines[0].startswith("1 listing(s) of API keys failed")
    assert "proj_b" in lines[0]
    assert "HTTP 503" in lines[0]
    assert lines[1].startswith("2 listing(s) of spend limits failed")
    assert stage.spend_limits() == {None: ORG_LIMIT}


def test_a_listing_that_outlived_its_retries_is_asked_again_next_cycle(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger, clock: FrozenClock
) -> None:
    """A listing whose 5xx outlived the client's retries is not stored as made: the next cycle asks it again (the
    pool pauses meanwhile), and once it answers its keys are named."""
    source.failures[(KEYS, "proj_a")] = APIUnavailable("HTTP 503")
    for minutes in (0, 5):
        clock.current = NOW + dt.timedelta(minutes=minutes)
        cycle(stage, directory, ledger, clock.now())
    assert source.calls.count((KEYS, "proj_a")) == 2
    assert "key_alice" not in stage.known_keys()
    del source.failures[(KEYS, "proj_a")]
    clock.current = NOW + dt.timedelta(minutes=10)
    cycle(stage, directory, ledger, clock.now())
    stage.store_arrived()
    assert source.calls.count((KEYS, "proj_a")) == 3
    assert stage.known_keys() == {"key_alice": ALICE, "key_bot": BOT, "key_old": OLD}


def test_a_missing_scope_is_said_once_ever_and_still_counted(
    source: Source,
    directory: Directory,
    stage: DirectoryStage,
    ledger: Ledger,
    registry: CollectorRegistry,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 403 on the limits is said in one line the first time only; every refresh that meets it still counts it."""
    for scope in (None, "proj_a", "proj_b", "proj_c"):
        source.failures[(LIMIT, scope)] = ScopeError("HTTP 403: Missing scopes")
    with caplog.at_level(logging.WARNING, logger=DIRECTORY_LOGGER):
        for refreshes in range(3):
            clock.current = NOW + refreshes * REFRESH
            cycle(stage, directory, ledger, clock.now())
            stage.store_arrived()
    assert source.calls.count((LIMIT, None)) == 3
    assert errors(registry, "spend_limit") == 3
    [line] = caplog.messages
    assert "spend limits failed" in line
    assert "Missing scopes" in line


def test_key_names_list_never_listed_projects_now(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger
) -> None:
    """A message's key names are listed at once for a project never listed, and not again once it was."""
    assert stage.key_names({"proj_a"}, timeout=WAIT) == {"key_alice": ALICE, "key_bot": BOT}
    assert stage.key_names({"proj_a"}, timeout=WAIT) == {"key_alice": ALICE, "key_bot": BOT}
    assert source.calls == [(KEYS, "proj_a")]


def test_features_off_ask_nothing_of_them(
    source: Source, directory: Directory, conn: sqlite3.Connection, ledger: Ledger, registry: CollectorRegistry
) -> None:
    """Without api_keys no key is listed (not even for a message); without spend limits none is listed or shown."""
    keys_only = make_stage(directory, conn, registry, spend_limits=False)
    cycle(keys_only, directory, ledger, NOW)
    assert sorted(source.calls) == [(KEYS, "proj_a"), (KEYS, "proj_old")]
    keys_only.store_arrived()
    assert keys_only.spend_limits() == {}
    limits_only = make_stage(directory, conn, CollectorRegistry(), api_keys=False)
    assert limits_only.key_names({"proj_b"}, timeout=WAIT) == {"key_alice": ALICE, "key_bot": BOT, "key_old": OLD}
    cycle(limits_only, directory, ledger, NOW)
    assert (KEYS, "proj_b") not in source.calls
    assert len([call for call in source.calls if call[0] == LIMIT]) == 4


def test_a_missing_scope_is_probed_with_one_listing_per_cycle(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger, clock: FrozenClock
) -> None:
    """Once the key may not list spend limits (403), a cycle probes with one listing instead of one per project;
    the first that answers lists the rest again."""
    for scope in (None, "proj_a", "proj_b", "proj_c"):
        source.failures[(LIMIT, scope)] = ScopeError("HTTP 403: Missing scopes")
    cycle(stage, directory, ledger, NOW)
    stage.store_arrived()
    first = len([call for call in source.calls if call[0] == LIMIT])
    clock.current = NOW + REFRESH
    cycle(stage, directory, ledger, clock.now())
    stage.store_arrived()
    assert len([call for call in source.calls if call[0] == LIMIT]) == first + 1


def test_the_pace_allows_a_burst_then_its_rate_and_pauses_after_a_failure() -> None:
    """The listings' token bucket lets a burst through at once, then one listing per 1/rate seconds; a pause
    holds every worker back for its length."""
    now = [0.0]
    pace = listings_module._Pace(2.0, 3, monotonic=lambda: now[0])
    assert [pace.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pace.take() == pytest.approx(0.5)
    now[0] = 10.0
    pace.pause(30.0)
    assert pace.take() == pytest.approx(30.5)
    assert listings_module._Pace(None, 0).take() == 0.0


def test_keys_the_admin_key_may_not_list_are_known_by_id(
    source: Source, directory: Directory, stage: DirectoryStage, ledger: Ledger
) -> None:
    """While the key listing is refused (403), keys that start spending in two projects are known by their ids at
    once (their names will not come), so /metrics does not hold their series back for the hours the one-project
    probes would take."""
    for project in ("proj_a", "proj_b", "proj_c", "proj_old"):
        source.failures[(KEYS, project)] = ScopeError("HTTP 403: Missing scopes")
    cycle(stage, directory, ledger, NOW)
    stage.store_arrived()
    rows = [
        CostRow(TODAY, "proj_a", None, Decimal("5"), "key_alice"),
        CostRow(TODAY, "proj_b", None, Decimal("2"), "key_new"),
        CostRow(TODAY, "proj_c", None, Decimal("2"), "key_newer"),
    ]
    ledger.replace_days([TODAY], rows, NOW, by_key=True)
    cycle(stage, directory, ledger, NOW + dt.timedelta(minutes=1))  # probes one of the two projects only
    stage.store_arrived()
    known = stage.known_keys()
    assert {key_name(key, known) for key in ("key_new", "key_newer", "key_alice")} == {
        "key_new",
        "key_newer",
        "key_alice",
    }
