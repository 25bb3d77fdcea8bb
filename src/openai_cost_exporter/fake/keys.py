"""API keys of the simulated organization: who owns them, and how every amount splits over them.

Each project that spends has a `KeyRing`: one to four listed keys (`MANY_KEYS` for the many-keys project, every
fifth of them never used), each owned by a user of the organization or by a service account of the project, and
one deleted key that spent until one of the 45 days before generation and is no longer listed. A quarter of the
projects also spend a few per cent outside API keys (the API's `api_key_id: null`), and so does all unattributed
spend. A ring is drawn from a generator of its own (seed and project id) when first asked for: keys never consume
the organization's random stream, so the existing projects and amounts stay what they were.

An amount of a project and day `o` (a billed cell, a usage count) splits over that day's `Shares` by integer
weights, floored, the last slot taking the remainder (`split`): the parts always add up to the whole exactly.
Every cell of a project splits with the same shares, which change once, on the day the deleted key stopped.
"""

from __future__ import annotations

import dataclasses
import random
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from openai_cost_exporter.fake.plan import FakeProject, Spender
from openai_cost_exporter.fake.spend import Cell
from openai_cost_exporter.fake.traffic import day_origin, day_second

#: 2025-12-06T00:00Z: the costs endpoint refuses `group_by=api_key_id` for a start_time before (§9).
KEYS_EPOCH = 1764979200
MANY_KEYS = 45  # listed keys of the many-keys project: more than two pages of 20
_UNUSED_EVERY = 5  # every fifth key of the many-keys project was never used
_NULL_KEY_PERCENT = 25  # of the projects with keys also spend outside API keys
_NULL_KEY_DIVISOR = 20  # ... about 5% of their spend
_SERVICE_PERCENT = 40  # of the keys belong to a service account
_DELETED_WITHIN_DAYS = 45  # the deleted key stopped on one of the last 45 days
_HOUR = 3600
_DAY = 86_400
_ALNUM = string.ascii_letters + string.digits
_FIRST_NAMES = ("Alice", "Bashir", "Chen", "Dana", "Emeka", "Fatima", "Gustav", "Hana", "Inès", "Jonas", "Kiri", "Zoë")
_LAST_NAMES = ("Martin", "O'Neill", "Nakamura", "Okafor", "Silva", "Weber", "Kowalski", "Haddad", "Müller", "Park")
_DEVICES = ("laptop", "dev", "notebook", "staging", "prod")
_SERVICES = ("ci-deploy", "batch-worker", "prod-backend", "evals-runner", "etl", "support-bot")
_AWKWARD_KEY_NAME = 'prod "blue" Zürich'  # the many-keys project's first key: quotes and non-ASCII in a label
#: (project_id, api_key_id, line_item, nanodollars); api_key_id None = spend outside API keys.
KeyCell = tuple[str | None, str | None, str, int]


@dataclass(frozen=True, slots=True)
class Owner:
    """Who owns a key: a user of the organization or a service account of the project."""

    type: str  # "user" | "service_account"
    id: str
    name: str
    email: str | None  # users only
    role: str
    created_at: int


@dataclass(frozen=True, slots=True)
class FakeApiKey:
    """A project API key, with its share of the project's spend."""

    id: str
    name: str
    redacted_value: str
    created_at: int
    last_used_at: int | None
    owner: Owner
    weight: int  # share of the project's spend; 0 = never used
    deleted_at: int | None = None  # deleted keys are not listed, their past spend stays in costs

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class Shares:
    """How an amount of one project and day splits: one positive weight per slot (an api_key_id, None = no key)."""

    slots: tuple[str | None, ...]
    weights: tuple[int, ...]
    total: int

    @classmethod
    def of(cls, pairs: Iterable[tuple[str | None, int]]) -> Shares:
        kept = [(slot, weight) for slot, weight in pairs if weight > 0]
        return cls(tuple(s for s, _ in kept), tuple(w for _, w in kept), sum(w for _, w in kept))


#: Spend outside API keys only: unattributed spend, projects without keys.
NO_KEY = Shares((None,), (1,), 1)


def split(n: int, shares: Shares) -> list[int]:
    """`n` split by the weights, floored, the last slot taking the remainder: the parts sum to `n` exactly."""
    weights, total = shares.weights, shares.total
    if len(weights) == 1:
        return [n]
    parts = [n * w // total for w in weights[:-1]]
    parts.append(n - sum(parts))
    return parts


@dataclass(frozen=True, slots=True)
class KeyRing:
    """A project's keys (listed ones in listing order, the deleted one last) and how its spend splits."""

    keys: tuple[FakeApiKey, ...]
    null_weight: int  # share of spend outside API keys; 0 for most projects
    deleted_day: int  # ordinal of the first day the deleted key spends nothing
    before: Shares  # up to the day before deleted_day
    after: Shares  # from deleted_day on

    @property
    def listed(self) -> tuple[FakeApiKey, ...]:
        return tuple(k for k in self.keys if not k.deleted)

    def shares(self, o: int) -> Shares:
        return self.before if o < self.deleted_day else self.after


def key_ring(keys: Sequence[FakeApiKey], null_weight: int, deleted_day: int) -> KeyRing:
    """A ring from its keys; the null slot comes first, so a key takes the remainder."""
    before = Shares.of([(None, null_weight), *((k.id, k.weight) for k in keys)])
    after = Shares.of([(None, null_weight), *((k.id, k.weight) for k in keys if not k.deleted)])
    return KeyRing(tuple(keys), null_weight, deleted_day, before, after)


def split_cells(book: KeyBook, o: int, cells: Iterable[Cell], include_zero: bool) -> list[KeyCell]:
    """The cells of day `o` split over their projects' keys (zero parts only with `include_zero`)."""
    out: list[KeyCell] = []
    known: dict[str | None, Shares] = {}
    for p, li, n in cells:
        shares = known.get(p)
        if shares is None:
            shares = known[p] = book.shares(p, o)
        for slot, part in zip(shares.slots, split(n, shares), strict=True):
            if part or include_zero:
                out.append((p, slot, li, part))
    return out


class KeyBook:
    """Every project's `KeyRing`, drawn when first asked for (free for organizations whose keys nobody reads)."""

    def __init__(
        self, seed: int, now: int, projects: Sequence[FakeProject], spenders: Sequence[Spender], many_keys: str | None
    ) -> None:
        self._seed = seed
        self._now = now
        self._projects = {p.id: p for p in projects}
        self._spenders = {s.project_id: s for s in spenders if s.project_id is not None and s.items}
        self._many_keys = many_keys
        self._users = _users(seed, now)
        self._rings: dict[str, KeyRing | None] = {}

    def ring(self, project_id: str | None) -> KeyRing | None:
        """The project's keys; None for unattributed spend and for a project that never spends."""
        if project_id is None:
            return None
        if project_id not in self._rings:
            self._rings[project_id] = self._draw(project_id) if project_id in self._spenders else None
        return self._rings[project_id]

    def shares(self, project_id: str | None, o: int) -> Shares:
        """How the project's amounts of day `o` split over its keys."""
        ring = self.ring(project_id)
        return NO_KEY if ring is None else ring.shares(o)

    def _draw(self, project_id: str) -> KeyRing:
        rng = random.Random(f"keys:{self._seed}:{project_id}")  # noqa: S311 deterministic fake data
        project, spender = self._projects[project_id], self._spenders[project_id]
        many = project_id == self._many_keys
        end = min(project.archived_at or self._now, self._now)  # keys of an archived project went quiet then
        listed = []
        for i in range(MANY_KEYS if many else rng.randint(1, 4)):
            used = not (many and i % _UNUSED_EVERY == _UNUSED_EVERY - 1)
            key = self._key(rng, project, end, used=used)
            listed.append(dataclasses.replace(key, name=_AWKWARD_KEY_NAME) if many and i == 0 else key)
        today = day_second(self._now)[0]
        last = today - 1
        deleted_day = rng.randint(min(max(spender.first_day + 2, today - _DELETED_WITHIN_DAYS), last), last)
        deleted_at = day_origin(deleted_day) - rng.randint(1, _HOUR)  # late on the last day it spent
        deleted = self._key(rng, project, min(end, deleted_at), used=True)
        null_weight = 0
        if rng.randrange(100) < _NULL_KEY_PERCENT:
            null_weight = max(1, sum(k.weight for k in listed) // _NULL_KEY_DIVISOR)
        listed.sort(key=lambda k: (k.created_at, k.id))
        return key_ring([*listed, dataclasses.replace(deleted, deleted_at=deleted_at)], null_weight, deleted_day)

    def _key(self, rng: random.Random, project: FakeProject, end: int, *, used: bool) -> FakeApiKey:
        kid = "key_" + "".join(rng.choices(_ALNUM, k=16))
        created = project.created_at + rng.randint(60, 20 * _HOUR)
        if rng.randrange(100) < _SERVICE_PERCENT:
            service = rng.choice(_SERVICES)
            sid = "svc_acct_" + "".join(rng.choices(_ALNUM, k=16))
            owner = Owner("service_account", sid, service, None, "member", created - rng.randint(1, _HOUR))
            name, prefix = f"{service} key", "sk-svcacct-"
        else:
            owner = rng.choice(self._users)
            name, prefix = f"{owner.name.split()[0].lower()}-{rng.choice(_DEVICES)}", "sk-proj-"
        secret = "".join(rng.choices(_ALNUM, k=7))
        last_used = rng.randint(max(created, end - 3 * _HOUR), max(created, end)) if used else None
        weight = rng.randint(5, 100) if used else 0
        return FakeApiKey(kid, name, f"{prefix}{secret[:3]}...{secret[3:]}", created, last_used, owner, weight)


def _users(seed: int, now: int) -> tuple[Owner, ...]:
    """The organization's users who own keys; the first is its owner."""
    rng = random.Random(f"users:{seed}")  # noqa: S311 deterministic fake data
    users = []
    for i, first in enumerate(_FIRST_NAMES):
        last = rng.choice(_LAST_NAMES)
        uid = "user-" + "".join(rng.choices(_ALNUM, k=24))
        local = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore").decode().replace("'", "")
        created = now - rng.randint(800, 1000) * _DAY
        role = "owner" if i == 0 else "member"
        users.append(Owner("user", uid, f"{first} {last}", f"{local.lower()}@example.com", role, created))
    return tuple(users)
