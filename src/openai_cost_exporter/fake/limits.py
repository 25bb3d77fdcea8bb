"""Hard spend limits of the simulated organization (openai-admin-api.md §9): monthly, in USD cents.

`initial_limits` sets them when the organization is generated. The organization's limit is three times its
usual month, rounded up to a thousand dollars. Of the busiest projects (`limit_candidates`): the busiest and the
fourth have a limit far above their spend (ten usual months, in hundreds of dollars); the second is near its
limit: its month-to-date billed spend at the generation clock is ~85% of it (`near_limit_cents`; on the 1st of
a month before anything is billed, twice its usual daily spend stands in for the month-to-date); the third has
reached its limit (`reached_cents`), `enforcement.status` "enforcing". Every other project has no limit.

Limits are data, not rules: they are not re-evaluated as the clock moves (85% holds at generation time only),
and an enforcing limit does not stop the project's spend. `spend_limit_json` writes the API's resources.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from openai_cost_exporter.fake.plan import FakeProject, to_nanos

STATUSES = ("inactive", "enforcing")
NEAR_LIMIT_PERMILLE = 850  # the near-limit project's month-to-date, per mille of its limit
_NANOS_PER_CENT = 10**7
_ORG_MONTHS = 3  # the organization's limit, in usual months of spend
_FAR_MONTHS = 10  # a far limit, in usual months of the project's spend
_MONTH_DAYS = 31
#: Places in `limit_candidates` (busiest first) of the projects whose limits have a role.
FAR_RANKS = (0, 3)
NEAR_RANK = 1
REACHED_RANK = 2


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """A hard limit: `cents` a month, and whether it is being enforced."""

    cents: int
    status: str


class SpendLimits:
    """The limits set, by project_id (None = the organization's)."""

    def __init__(self) -> None:
        self._limits: dict[str | None, SpendLimit] = {}

    def get(self, project_id: str | None) -> SpendLimit | None:
        return self._limits.get(project_id)

    def set(self, project_id: str | None, cents: int | None, status: str = "inactive") -> None:
        """Set a limit (None cents removes it); ValueError for a negative or non-integer amount or a bad status."""
        if cents is None:
            self._limits.pop(project_id, None)
            return
        if type(cents) is not int or cents < 0:
            raise ValueError("threshold cents must be a non-negative integer")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        self._limits[project_id] = SpendLimit(cents, status)


def limit_candidates(projects: Sequence[FakeProject], roles: Collection[str]) -> list[str]:
    """Active projects that spend and have no other role, busiest first: where keys and limits get roles."""
    plain = [p for p in projects if not p.archived and p.daily_usd > 0 and p.id not in roles]
    return [p.id for p in sorted(plain, key=lambda p: (-p.daily_usd, p.id))]


def near_limit_cents(mtd_nanos: int, daily_nanos: int) -> int:
    """The limit of which `mtd_nanos` is 85%, rounded up to a cent (twice `daily_nanos` when nothing is billed)."""
    basis = mtd_nanos if mtd_nanos > 0 else 2 * daily_nanos
    return max(1, _ceil_div(basis * 1000, _NANOS_PER_CENT * NEAR_LIMIT_PERMILLE))


def reached_cents(mtd_nanos: int) -> int:
    """A limit already reached: the month-to-date rounded down to a cent (at least one cent)."""
    return max(1, mtd_nanos // _NANOS_PER_CENT)


def far_cents(daily_nanos: int) -> int:
    """A limit far above the spend: ten usual months, rounded up to a hundred dollars."""
    hundreds = _ceil_div(daily_nanos * _MONTH_DAYS * _FAR_MONTHS, 100 * 100 * _NANOS_PER_CENT)
    return max(1, hundreds) * 100 * 100


def org_cents(daily_nanos: int) -> int:
    """The organization's limit: three usual months of all its spend, rounded up to a thousand dollars."""
    thousands = _ceil_div(daily_nanos * _MONTH_DAYS * _ORG_MONTHS, 1000 * 100 * _NANOS_PER_CENT)
    return max(1, thousands) * 1000 * 100


def initial_limits(
    projects: Sequence[FakeProject], candidates: Sequence[str], month_to_date: Callable[[str], int]
) -> SpendLimits:
    """The limits of a freshly generated organization (see the module docstring)."""
    limits = SpendLimits()
    daily = {p.id: to_nanos(p.daily_usd) for p in projects}
    limits.set(None, org_cents(sum(daily.values())))
    for pid in ranked(candidates, *FAR_RANKS):
        limits.set(pid, far_cents(daily[pid]))
    for pid in ranked(candidates, NEAR_RANK):
        limits.set(pid, near_limit_cents(month_to_date(pid), daily[pid]))
    for pid in ranked(candidates, REACHED_RANK):
        limits.set(pid, reached_cents(month_to_date(pid)), "enforcing")
    return limits


def ranked(candidates: Sequence[str], *ranks: int) -> tuple[str, ...]:
    """The candidates at these places that exist (a small organization has fewer roles)."""
    return tuple(candidates[r] for r in ranks if r < len(candidates))


def spend_limit_json(project_id: str | None, limit: SpendLimit) -> dict[str, Any]:
    """`OrganizationSpendLimitResource` (project_id None) or `ProjectSpendLimitResource`."""
    return {
        "object": "organization.spend_limit" if project_id is None else "project.spend_limit",
        "threshold_amount": limit.cents,
        "currency": "USD",
        "interval": "month",
        "enforcement": {"status": limit.status},
    }


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
