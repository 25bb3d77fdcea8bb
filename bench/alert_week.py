"""Benchmark: a week of the live cycle, every 3 hours, over scenarios of the simulated organization, and the
messages each scenario gets (by rule and level). Nothing is asserted: these are figures.

    python bench/alert_week.py

The scenarios, on a week from a Wednesday (so a weekend): an ordinary organization, young ones (1, 9 and 20 days
of history), a project that steps up to 5x for good, and a 10x runaway of 2 hours. The fake's hard-limit projects
send their limit messages in each. It runs the exporter's own cycle with the clock injected, so an older checkout
can be measured the same way (`PYTHONPATH=<old>/src`; the flat layout before the packages is imported too). It is
the stand-in until the labelled calendar corpus of issue 20 (`bench/alert_quality.py`) exists.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import tempfile
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from openai_cost_exporter.app import build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg

try:
    from openai_cost_exporter.core.clock import FrozenClock
except ImportError:  # the flat layout before the packages
    from openai_cost_exporter.clock import FrozenClock  # type: ignore[import-not-found,no-redef]

KEY = "sk-admin-score"
START = dt.datetime(2026, 11, 25, 0, 30, tzinfo=dt.UTC)  # a Wednesday: the week holds a weekend
STEP = dt.timedelta(hours=3)
CYCLES = 7 * 8


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, str]] = []

    def send(self, message: Any) -> None:
        self.sent.append((message.day.isoformat(), message.rule, message.level, message.subject_id))


def scenario(name: str, state: Path) -> list[tuple[str, str, str, str]]:
    clock = FrozenClock(START)
    history = {"young-1d": 1, "young-9d": 9, "young-20d": 20}.get(name, 400)
    org = FakeOrg.generate(
        seed=7, project_count=30, clock=clock, spike_project=False, rhythm_projects=True, history_days=history
    )
    target = org.steady_search_project_id or org.projects[1].id
    with FakeAdminAPI(org, admin_key=KEY) as api:
        exporter = build_exporter(
            load_settings(base_url=api.base_url, admin_key=KEY, state_dir=state, listen=""), clock=clock
        )
        recorder = Recorder()
        exporter.cycle._alerter._notifier = recorder  # type: ignore[union-attr]  # bench only: record, do not post
        try:
            for n in range(CYCLES):
                clock.current = START + n * STEP
                if name == "lasting-5x" and clock.current.hour == 0:
                    org.scale_today(target, Decimal(5))
                if name == "runaway-10x" and n == 12:  # Thursday 12:30
                    org.start_runaway(target, Decimal(10), clock.current - dt.timedelta(minutes=30))
                if name == "runaway-10x" and n == 14:
                    org.stop_runaway(target, clock.current - dt.timedelta(minutes=50))
                exporter.cycle.run_once()
        finally:
            exporter.close()
    return recorder.sent


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)
    for name in ("ordinary", "young-1d", "young-9d", "young-20d", "lasting-5x", "runaway-10x"):
        with tempfile.TemporaryDirectory() as tmp:
            sent = scenario(name, Path(tmp))
        rules = Counter(f"{rule}/{level}" for _, rule, level, _ in sent)
        print(f"{name:12} {len(sent):3} messages  {dict(sorted(rules.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
