"""Shared test set-up: retries without back-off, and nothing reaches the real network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina

from tests.stack import VictoriaMetrics, victoria_metrics


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
