"""Shared test set-up: retries without back-off, and nothing reaches the real network."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
import stamina

from tests.stack import VictoriaMetrics, victoria_metrics

#: Longer than the whole suite takes on the CI machine (about 2.5 minutes).
SUITE_MINUTES = 6


def pytest_sessionstart(session: pytest.Session) -> None:
    """Do not start the suite just before UTC midnight.

    The CLI tests run the exporter as a separate process on the system clock against a fake organization
    frozen at "now" in the test process; the two must agree on the UTC day. Time cannot be injected into that
    other process, so a run that would cross midnight first waits for it (at most SUITE_MINUTES).
    """
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    wait = (midnight - now).total_seconds()
    if wait < SUITE_MINUTES * 60:
        print(f"waiting {wait:.0f} s for UTC midnight before the suite starts", flush=True)
        time.sleep(wait + 2)


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
