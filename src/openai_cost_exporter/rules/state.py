"""What the alert decision remembers and says (pure data): message keys, incidents, the state between cycles, and
one decided message."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from openai_cost_exporter.rules import Alert

#: The rules whose alerts are incidents that last across cycles and days.
RUNAWAY = "runaway"
SPIKE = "spike"


@dataclass(frozen=True, slots=True)
class Key:
    """What a notification is about: one (rule, subject, UTC day, level)."""

    rule: str
    subject_id: str
    day: dt.date
    level: str

    def params(self) -> tuple[str, str, str, str]:
        return (self.rule, self.subject_id, self.day.isoformat(), self.level)


@dataclass(frozen=True, slots=True)
class Incident:
    """A runaway or a spike of one subject: open from the day it fired until the day it stopped (a runaway) or
    QUIET_DAYS after the day it was last seen (a spike)."""

    opened: dt.date
    closed: dt.date | None = None
    seen: dt.date | None = None  # a spike: the last day it fired
    ratio: Decimal | None = None  # a spike: the highest ratio to the usual of the days before `seen` (None: new spend)
    peak: Decimal | None = None  # a spike: the highest ratio on `seen`; a runaway: the highest it has had


@dataclass(frozen=True, slots=True)
class AlertState:
    """What the decision remembers between cycles."""

    incidents: Mapping[str, Incident] = field(default_factory=dict)  # runaway incidents, by subject_id
    said: Mapping[Key, Decimal] = field(default_factory=dict)  # the value last notified, by message key
    spikes: Mapping[str, Incident] = field(default_factory=dict)  # spike incidents, by subject_id

    def oldest_day(self, day: dt.date) -> dt.date:
        """The oldest message day a decision on `day` may look up: the 1st of its month (the spend limit's messages
        are keyed by their month), or the day an open incident opened, if earlier."""
        open_incidents = [*self.incidents.values(), *self.spikes.values()]
        return min([day.replace(day=1), *(i.opened for i in open_incidents if i.closed is None)])


@dataclass(frozen=True, slots=True)
class Decision:
    """One message to send: the alert, its key, whether it escalates, and the value said before."""

    alert: Alert
    key: Key
    escalation: bool
    previous: Decimal | None


def message_due(last: Decimal | None, value: Decimal, factor: Decimal) -> bool | None:
    """The rule of no spam: a first message (False), an escalation (True: `value` reached `factor` x the value
    last notified), or no message (None)."""
    if last is None:
        return False
    if last > 0 and value >= factor * last:
        return True
    return None


def alert_key(alert: Alert, day: dt.date) -> Key:
    """The key of an alert's message: an incident's messages are keyed by the day it opened, whatever day it is."""
    return Key(alert.rule, alert.subject_id, alert.since or day, alert.level)
