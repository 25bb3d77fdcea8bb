"""Tests of the usage store's 1-minute rows: replaced by minute, summed per project and model, pruned with the span
they cover."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.core.models import UsageRow
from openai_cost_exporter.store.state import open_state
from openai_cost_exporter.store.usage_store import UsageStore

T = 1_764_072_000  # a whole minute (2025-11-25 12:00 UTC)
MODEL = "gpt-4o-2024-08-06"


def row(minute: int, project: str = "proj_a", kind: str = "completions", output: int = 10) -> UsageRow:
    return UsageRow(minute, project, MODEL, kind, 100, 0, output, 1)


def price(r: UsageRow) -> Decimal | None:
    """A dollar per output token; a project named `proj_unpriced` has no price."""
    return None if r.project_id == "proj_unpriced" else Decimal(r.output_tokens)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[UsageStore]:
    conn = open_state(tmp_path / "state.sqlite3")
    yield UsageStore(conn)
    conn.close()


def test_minutes_are_summed_per_project_model_and_minute_priced_rows_only(store: UsageStore) -> None:
    """`by_minute` adds the endpoints' rows of a minute and leaves out unpriced rows and minutes outside the span."""
    store.replace_minutes("completions", [T, T + 60], [row(T), row(T + 60), row(T, "proj_unpriced")], price)
    store.replace_minutes("embeddings", [T], [row(T, kind="embeddings", output=5)], price)
    assert store.by_minute(T, T + 60) == {("proj_a", MODEL, T): Decimal(15)}
    assert store.by_minute(T, T + 120)[("proj_a", MODEL, T + 60)] == Decimal(10)


def test_a_refetched_minute_replaces_its_rows_of_that_endpoint_only(store: UsageStore) -> None:
    """A minute asked again (late usage revised) is replaced, an empty answer clears it, the other endpoint stays."""
    store.replace_minutes("completions", [T, T + 60], [row(T), row(T + 60)], price)
    store.replace_minutes("embeddings", [T], [row(T, kind="embeddings", output=5)], price)
    store.replace_minutes("completions", [T, T + 60], [row(T, output=30)], price)
    assert store.by_minute(T, T + 120) == {("proj_a", MODEL, T): Decimal(35)}


def test_marking_the_covered_span_prunes_older_minutes(store: UsageStore) -> None:
    """`mark_minutes` records the span without a gap and deletes the rows before it."""
    assert store.minutes_covered() is None
    store.replace_minutes("completions", [T, T + 60, T + 120], [row(T), row(T + 60), row(T + 120)], price)
    store.mark_minutes(T + 60, T + 180)
    assert store.minutes_covered() == (T + 60, T + 180)
    assert set(store.by_minute(0, T + 600)) == {("proj_a", MODEL, T + 60), ("proj_a", MODEL, T + 120)}
