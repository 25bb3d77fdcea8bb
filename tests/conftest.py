"""Shared test set-up: retries without back-off, "now" pinned (tests/moments.py), nothing reaches the network."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import stamina

from tests.moments import DEFAULT, behind_victoriametrics, moments
from tests.stack import VictoriaMetrics, victoria_metrics

#: Fixtures that bring a real VictoriaMetrics into a test.
VICTORIA_METRICS_FIXTURES = {"vm", "stack"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--calendar",
        default="",
        help="run every test marked calendar at these moments of tests/moments.py: 'all' or names with commas "
        "(default: only its Wednesday afternoon)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With --calendar, a test marked `calendar` runs once at each moment asked for, named by it (only those of the
    past where it reads history back from a real VictoriaMetrics: moments.behind_victoriametrics)."""
    spec = metafunc.config.getoption("--calendar")
    if not spec or metafunc.definition.get_closest_marker("calendar") is None:
        return
    if "now" not in metafunc.fixturenames:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} is marked calendar but does not take `now`")
    try:
        chosen = moments(spec)
    except ValueError as exc:
        raise pytest.UsageError(f"--calendar: {exc}") from None
    if VICTORIA_METRICS_FIXTURES & set(metafunc.fixturenames):
        chosen = behind_victoriametrics(chosen)
    metafunc.parametrize("now", list(chosen.values()), ids=list(chosen), indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A calendar test left without a moment (it reads history back from VictoriaMetrics, and only moments of the
    future were asked for) is deselected, not skipped: it does not apply there."""
    empty = [
        item
        for item in items
        if item.get_closest_marker("calendar") is not None
        and any("empty parameter set" in str(m.kwargs.get("reason", "")) for m in item.iter_markers("skip"))
    ]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [item for item in items if item not in empty]


@pytest.fixture
def now(request: pytest.FixtureRequest) -> dt.datetime:
    """The moment the test runs at: DEFAULT, or each moment of the calendar run in turn."""
    return getattr(request, "param", DEFAULT)


@pytest.fixture(autouse=True)
def _no_retry_backoff() -> Iterator[None]:
    """Retries still happen in tests, but without waiting (stamina's test mode)."""
    stamina.set_testing(True, attempts=3)
    yield
    stamina.set_testing(False)


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A real VictoriaMetrics for the test module (tests/stack.py has the flags and why)."""
    with victoria_metrics(tmp_path_factory.mktemp("vm")) as server:
        yield server
