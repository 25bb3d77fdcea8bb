"""Tests of chains fetched side by side (side_by_side.py): what arrives, the bound, stopping, and a background task."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

import pytest

from openai_cost_exporter.core.side_by_side import Background, Ended, SideBySide

WAIT = 10.0  # seconds an event may take, far more than it needs: these waits only fail a broken test


def pages(name: str, count: int) -> Iterator[str]:
    yield from (f"{name}{n}" for n in range(count))


def test_every_page_of_every_chain_arrives_in_its_chain_order_then_its_end() -> None:
    """Each chain's pages arrive in order, tagged with its name, followed by one Ended without an error."""
    fetch = SideBySide({"a": lambda: pages("a", 3), "b": lambda: pages("b", 2)}, at_once=2)
    seen: dict[str, list[object]] = {"a": [], "b": []}
    for name, item in fetch:
        seen[name].append(item)
    assert seen["a"] == ["a0", "a1", "a2", Ended(None)]
    assert seen["b"] == ["b0", "b1", Ended(None)]


def test_no_more_pages_than_at_once_are_out_at_a_time() -> None:
    """A chain asks for its next page only when fewer than `at_once` are fetched or waiting to be stored."""
    out, most = 0, 0
    lock = threading.Lock()

    def counted(name: str) -> Iterator[str]:
        nonlocal out, most
        for page in pages(name, 5):
            with lock:
                out += 1
                most = max(most, out)
            yield page

    fetch = SideBySide({n: functools.partial(counted, n) for n in "abc"}, at_once=2)
    received = 0
    for _, item in fetch:
        if not isinstance(item, Ended):
            received += 1
            with lock:
                out -= 1  # stored: its slot is free once the loop asks for the next
    assert received == 15
    assert most <= 2


def test_a_failed_chain_is_handed_over_and_stop_keeps_the_others_from_asking_again() -> None:
    """A chain's exception arrives as its Ended; after `stop()` no other chain asks for another page."""
    stopped = threading.Event()
    asked: list[str] = []

    def recorded() -> Iterator[str]:
        for page in pages("b", 3):
            asked.append(page)
            yield page

    def waits_for_stop() -> Iterator[str]:
        stopped.wait(WAIT)  # the calling thread has seen the failure and stopped the fetch
        return recorded()

    def fails() -> Iterator[str]:
        raise RuntimeError("boom")

    fetch = SideBySide({"a": fails, "b": waits_for_stop}, at_once=2)
    ends: dict[str, Ended] = {}
    for name, item in fetch:
        if isinstance(item, Ended):
            ends[name] = item
            if item.error is not None:
                fetch.stop()
                stopped.set()
    assert isinstance(ends["a"].error, RuntimeError)
    assert ends["b"] == Ended(None)
    assert asked == []


def test_an_unbounded_chain_arrives_while_the_bounded_pages_are_held() -> None:
    """A chain named `unbounded` takes no page slot: its item comes while every slot is taken."""
    listed = threading.Event()

    def names() -> Iterator[str]:
        listed.set()
        yield "names"

    fetch = SideBySide({"costs": lambda: pages("c", 2), "projects": names}, at_once=1, unbounded=["projects"])
    got: list[object] = []
    for _, item in fetch:
        if item == "c0":
            assert listed.wait(WAIT)  # the only slot is c0's, still held here
        got.append(item)
    assert "names" in got
    assert got.index("c0") < got.index("c1")


def test_a_caller_that_leaves_early_lets_the_waiting_chains_end() -> None:
    """Leaving the loop early (the storing thread failed) ends the workers that wait for a slot."""
    fetch = SideBySide({"slow": lambda: pages("s", 100)}, at_once=1)
    for _, _item in fetch:
        break
    for thread in [t for t in threading.enumerate() if t.name == "slow"]:
        thread.join(WAIT)
        assert not thread.is_alive()


def test_background_hands_over_its_value_or_its_exception() -> None:
    """`result()` waits for the work: its value, or its exception raised in the asking thread."""
    release = threading.Event()
    value = Background("value", lambda: release.wait(WAIT) and 42)
    assert not value.done()
    release.set()
    assert value.result() == 42
    assert value.done()

    def broken() -> int:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        Background("broken", broken).result()
