"""The spend model of the simulated organization: what each spender spends, when, and the tests' changes to it.

A day amount (spender, line item, UTC day) is a pure function of the seed: the spender's base level, a weekday
rhythm and a noise table indexed by `key(project, line item) ^ key(day)`; within the day it follows the
spender's hourly profile (fake/traffic.py). Tests change the truth through three switches kept here: exact
billed cells (`set_cost`), a factor on one day (`scale`) and runaways (a rate jump from a moment on).
Amounts are integer nanodollars; day arguments are date ordinals (`o`).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Collection, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from openai_cost_exporter.fake.plan import Spender
from openai_cost_exporter.fake.traffic import (
    DAY_SECONDS,
    Runaway,
    day_origin,
    day_second,
    runaway_extra,
    runaway_touches,
    spent_by,
)

SPIKE_FACTOR = 4
#: Per-mille spend by weekday, Monday first: weekends are quieter.
_WEEKDAY = (1040, 1080, 1100, 1060, 980, 560, 480)
_STEADY_RHYTHM = 1000  # steady spenders ignore the weekday
_TABLE_MASK = 4095
NOISE_TABLE_SIZE = _TABLE_MASK + 1
_SPARSE_MASK = 7  # a sparse spender spends on one day in eight
Cell = tuple[str | None, str, int]  # (project_id, line_item, nanodollars)


class SpendModel:
    """Deterministic spend of every spender, with the switches tests flip."""

    def __init__(self, seed: int, spenders: Sequence[Spender], noise: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
        self._seed = seed
        self._spenders = spenders
        self._noise, self._steady_noise = noise
        self._day_keys: dict[int, int] = {}
        self._overrides: dict[int, dict[tuple[str | None, str], int]] = {}
        self._scales: dict[tuple[int, str | None], Decimal] = {}
        self._runaways: dict[str | None, list[Runaway]] = {}

    # ---- the shape of a day ------------------------------------------------------------------------------

    def day_amounts(self, s: Spender, o: int, today: int) -> tuple[int, ...]:
        """Full-day nanodollars of each of the spender's items on day ordinal `o` (empty: no spend that day);
        `today` is the clock's day ordinal, when the spike project runs at SPIKE_FACTOR."""
        if o < s.first_day or (s.stop_day is not None and o >= s.stop_day):
            return ()
        dk = self._day_key(o)
        if s.sparse_key is not None and (s.sparse_key ^ dk) & _SPARSE_MASK:
            return ()
        steady = (self._steady_noise, _STEADY_RHYTHM)
        table, rhythm = steady if s.steady else (self._noise, _WEEKDAY[(o + 6) % 7])
        mult = SPIKE_FACTOR if s.spike and o == today else 1
        amounts = tuple(base * rhythm * table[(key ^ dk) & _TABLE_MASK] // 1_000_000 * mult for _, base, key in s.items)
        if s.shape is None:
            return amounts
        permille = s.shape.permille(o)
        return tuple(n * permille // 1000 for n in amounts)

    def spent(self, s: Spender, o: int, day_nanos: int, second: int) -> int:
        """Nanodollars of one item (day amount `day_nanos`) spent on day `o` from 00:00 up to `second`, with the
        project's runaways and `scale` factor."""
        cumulative = s.profile.cumulative
        n = spent_by(day_nanos, cumulative, second)
        runs = self._runaways.get(s.project_id)
        if runs:
            n += runaway_extra(runs, day_nanos, cumulative, day_origin(o), second)
        factor = self._scales.get((o, s.project_id))
        if factor is not None:
            n = int((n * factor).to_integral_value(ROUND_HALF_EVEN))
        return n

    def item_spend(self, s: Spender, start: int, end: int, today: int) -> list[int]:
        """Nanodollars spent per item of spender `s` in [start, end) (Unix seconds, cut at nothing)."""
        totals = [0] * len(s.items)
        if end <= start:
            return totals
        for o in range(day_second(start)[0], day_second(end - 1)[0] + 1):
            day0 = day_origin(o)
            low, high = max(start - day0, 0), min(end - day0, DAY_SECONDS)
            for i, day_nanos in enumerate(self.day_amounts(s, o, today)):
                totals[i] += self.spent(s, o, day_nanos, high) - self.spent(s, o, day_nanos, low)
        return totals

    def is_special(self, s: Spender, o: int) -> bool:
        """Whether a switch (a runaway or a scale factor) changes the spender's spend on day `o`."""
        runs = self._runaways.get(s.project_id)
        return (o, s.project_id) in self._scales or bool(runs and runaway_touches(runs, day_origin(o)))

    def _day_key(self, o: int) -> int:
        key = self._day_keys.get(o)
        if key is None:
            key = self._day_keys[o] = zlib.crc32(f"{self._seed}:{o}".encode())
        return key

    # ---- billed cells ------------------------------------------------------------------------------------

    def day_cells(self, spenders: list[Spender], o: int, include_zero: bool, out: list[Cell]) -> None:
        """Append the cells of a closed day `o` (before today) to `out`."""
        # The hot loop of a big page (2,000 projects x 180 days): locals only, no calls per ordinary cell.
        dk = self._day_key(o)
        rhythm = _WEEKDAY[(o + 6) % 7]
        noise = self._noise
        append = out.append
        for s in spenders:
            if o < s.first_day or (s.stop_day is not None and o >= s.stop_day):
                continue
            if s.sparse_key is not None and (s.sparse_key ^ dk) & _SPARSE_MASK:
                continue
            if s.steady or s.shape is not None or self.is_special(s, o):
                self.billed_cells(s, o, o + 1, DAY_SECONDS, include_zero, out)
                continue
            pid = s.project_id
            for line_item, base, key in s.items:
                n = base * rhythm * noise[(key ^ dk) & _TABLE_MASK] // 1_000_000
                if n or include_zero:
                    append((pid, line_item, n))

    def billed_cells(self, s: Spender, o: int, today: int, second: int, include_zero: bool, out: list[Cell]) -> None:
        """Append the spender's cells of day `o` spent up to `second` of that day to `out`."""
        for (line_item, _, _), day_nanos in zip(s.items, self.day_amounts(s, o, today), strict=False):
            n = self.spent(s, o, day_nanos, second)
            if n or include_zero:
                out.append((s.project_id, line_item, n))

    def apply_overrides(
        self, o: int, cells: list[Cell], project_ids: Collection[str | None] | None, include_zero: bool
    ) -> list[Cell]:
        """`cells` of day `o` with the `set_cost` overrides of that day in place."""
        overrides = dict(self._overrides.get(o, {}))
        if not overrides:
            return cells
        out: list[Cell] = []
        for p, li, n in cells:
            value = overrides.pop((p, li), n)
            if value or include_zero:
                out.append((p, li, value))
        for (p, li), value in overrides.items():
            if value and (project_ids is None or p in project_ids):
                out.append((p, li, value))
        return out

    # ---- switches ----------------------------------------------------------------------------------------

    def set_cost(self, o: int, project_id: str | None, line_item: str, nanos: int) -> None:
        """Override one billed cell of day `o` with an exact amount."""
        self._overrides.setdefault(o, {})[(project_id, line_item)] = nanos

    def scale(self, o: int, project_id: str | None, factor: Decimal) -> None:
        """Multiply the project's spend on day `o` by `factor`."""
        self._scales[(o, project_id)] = factor

    def start_runaway(self, project_id: str | None, runaway: Runaway) -> None:
        """Start `runaway`, replacing the project's running one (ended ones stay)."""
        kept = [r for r in self._runaways.get(project_id, []) if r.end is not None]
        self._runaways[project_id] = [*kept, runaway]

    def stop_runaway(self, project_id: str | None, end: int) -> None:
        """End the project's running runaway at `end` (Unix seconds)."""
        runs = self._runaways.get(project_id, [])
        self._runaways[project_id] = [dataclasses.replace(r, end=end) if r.end is None else r for r in runs]
