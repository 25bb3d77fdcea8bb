"""The shape of a simulated day: hourly profiles, spend within the hour, and runaway windows.

A project's day amount (a cell of fake/org.py, in integer nanodollars) is spread over the 24 UTC hours by its
`Profile`: 25 cumulative per-mille marks, 0 at 00:00 and 1000 at 24:00. The spend up to hour `h` is
`day * cumulative[h] // 1000`, so the 24 hour amounts sum to the day amount exactly, and within an hour spend
grows linearly by whole minutes (again cumulative floors). Nothing here is random: profiles come from fixed
weights and from a CRC of the project id, so they never consume the generator's random stream.

A `Runaway` multiplies a project's spend rate by `numerator / denominator` over a time window; the extra
spend is exact integer arithmetic on the same cumulative amounts (`runaway_extra`).
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

HOURS = 24
DAY_SECONDS = 86_400
PERMILLE = 1000
_BATCH_PERCENT = 5  # of generated projects run one nightly batch job
_FLAT_PERCENT = 20  # spend evenly round the clock; the rest follow business hours
EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
#: Relative spend per UTC hour of a "business hours" project: quiet at night, a plateau 13-18 UTC.
_BUSINESS_WEIGHTS = (12, 10, 9, 8, 8, 9, 12, 18, 28, 40, 52, 62, 72, 80, 84, 86, 86, 84, 78, 64, 48, 34, 24, 16)


def day_second(unix: int) -> tuple[int, int]:
    """(UTC day ordinal, seconds since that midnight) of a Unix time."""
    return EPOCH_ORDINAL + unix // DAY_SECONDS, unix % DAY_SECONDS


def day_origin(ordinal: int) -> int:
    """Unix seconds of the midnight that starts a day ordinal."""
    return (ordinal - EPOCH_ORDINAL) * DAY_SECONDS


@dataclass(frozen=True, slots=True)
class Profile:
    """How a day's spend is spread over the UTC hours: `cumulative[h]` per mille spent before hour h."""

    name: str
    cumulative: tuple[int, ...]  # 25 marks, 0 ... 1000

    @property
    def hourly(self) -> tuple[int, ...]:
        """Per mille of the day spent in each hour; sums to 1000."""
        c = self.cumulative
        return tuple(c[h + 1] - c[h] for h in range(HOURS))

    @property
    def peak_hour(self) -> int:
        hourly = self.hourly
        return hourly.index(max(hourly))


def profile_from_weights(name: str, weights: Sequence[int]) -> Profile:
    """A profile whose hours get per-mille shares proportional to `weights` (cumulative floors)."""
    if len(weights) != HOURS or min(weights) < 0 or not sum(weights):
        raise ValueError("a profile needs 24 non-negative weights, not all zero")
    total, running, marks = sum(weights), 0, [0]
    for w in weights:
        running += w
        marks.append(PERMILLE * running // total)
    return Profile(name, tuple(marks))


FLAT = profile_from_weights("flat", (1,) * HOURS)
BUSINESS = profile_from_weights("business", _BUSINESS_WEIGHTS)


def batch_profile(peak_hour: int, share_permille: int = 500) -> Profile:
    """A nightly job: `share_permille` of the day in `peak_hour`, the rest spread evenly over the others."""
    if not 0 <= peak_hour < HOURS or not 0 < share_permille < PERMILLE:
        raise ValueError("peak_hour must be 0..23 and share_permille 1..999")
    rest = PERMILLE - share_permille
    weights = [share_permille * (HOURS - 1) if h == peak_hour else rest for h in range(HOURS)]
    return profile_from_weights("batch", weights)


def profile_for(project_id: str | None) -> Profile:
    """The profile of a generated project: most business hours, a fifth flat, one in twenty a batch job."""
    if project_id is None:
        return FLAT
    key = zlib.crc32(f"profile:{project_id}".encode())
    pick = key % 100
    if pick < _BATCH_PERCENT:
        return batch_profile((key >> 8) % HOURS, 400 + (key >> 16) % 201)
    return FLAT if pick < _BATCH_PERCENT + _FLAT_PERCENT else BUSINESS


def spent_by(day_nanos: int, cumulative: tuple[int, ...], second: int) -> int:
    """Nanodollars of a day amount spent from 00:00 up to `second` of the day (whole minutes count)."""
    if second >= DAY_SECONDS:
        return day_nanos
    if second <= 0:
        return 0
    hour, minute = divmod(second // 60, 60)
    low = day_nanos * cumulative[hour] // PERMILLE
    if not minute:
        return low
    high = day_nanos * cumulative[hour + 1] // PERMILLE
    return low + (high - low) * minute // 60


@dataclass(frozen=True, slots=True)
class Runaway:
    """The spend rate times numerator/denominator from `start` (Unix s) until `end` (None: still running)."""

    numerator: int
    denominator: int
    start: int
    end: int | None = None

    @classmethod
    def from_factor(cls, factor: Decimal, start: int) -> Runaway:
        """An exact rational from a finite, non-negative `Decimal`; ValueError otherwise."""
        if not factor.is_finite() or factor < 0:
            raise ValueError("factor must be finite and not negative")
        numerator, denominator = factor.as_integer_ratio()
        return cls(numerator, denominator, start)


def runaway_extra(
    runaways: Sequence[Runaway], day_nanos: int, cumulative: tuple[int, ...], day0: int, second: int
) -> int:
    """Extra nanodollars (negative for a factor below 1) the runaways add to `spent_by(..., second)` of the
    day starting at Unix `day0`: inside a window spend grows `factor` times as fast, floored."""
    extra = 0
    for r in runaways:
        low = min(max(r.start - day0, 0), DAY_SECONDS)
        high = DAY_SECONDS if r.end is None else min(max(r.end - day0, 0), DAY_SECONDS)
        upto = min(second, high)
        if upto <= low:
            continue
        delta = spent_by(day_nanos, cumulative, upto) - spent_by(day_nanos, cumulative, low)
        extra += (r.numerator - r.denominator) * delta // r.denominator
    return extra


def runaway_touches(runaways: Sequence[Runaway], day0: int) -> bool:
    """Whether any runaway window overlaps the day starting at Unix `day0`."""
    return any(r.start < day0 + DAY_SECONDS and (r.end is None or r.end > day0) for r in runaways)
