"""Benchmark: how long from the start of a runaway to its Slack message, with the default interval.

A simulated organization (the project's fake, in this process) and the exporter's real cycle, both on one
injected clock: the runaway starts at a random moment between two cycles, cycles run every `--interval` seconds
(default 300, the exporter's), and the delay is the time from the runaway's start to the end of the first cycle
that delivers a runaway message (to a recording notifier: what Slack would get). Printed per runaway factor:
minimum, median and maximum over `--trials` start moments. Nothing is asserted: these are figures.

    python bench/detection_delay.py [--interval 300] [--trials 12] [--factors 5 10 20]

The rule compares the estimated spend of the last 60 minutes with the usual spend of those minutes, so a
runaway needs part of an hour to weigh 3x: about 60 x 2 / (factor - 1) minutes of traffic, plus the wait for
the next cycle and the usage lag (60 s in the fake).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import random
import statistics
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from openai_cost_exporter.app import build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.notify.messages import OutboxMessage

KEY = "sk-admin-bench"
START = dt.datetime(2026, 11, 24, 14, tzinfo=dt.UTC)  # a Tuesday afternoon
MAX_MINUTES = 180


class Recorder:
    """A notifier that keeps the runaway messages it is given."""

    def __init__(self) -> None:
        self.runaways: list[OutboxMessage] = []

    def send(self, message: OutboxMessage) -> None:
        if message.rule == "runaway":
            self.runaways.append(message)


def one_trial(factor: Decimal, offset: float, interval: float, state: Path) -> float | None:
    """Minutes from the runaway's start to the end of the cycle that sent its message (None: not within 3 h)."""
    clock = FrozenClock(START)
    org = FakeOrg.generate(seed=11, project_count=30, clock=clock, rhythm_projects=True)
    target = org.steady_search_project_id or org.projects[0].id
    with FakeAdminAPI(org, admin_key=KEY) as api:
        settings = load_settings(base_url=api.base_url, admin_key=KEY, state_dir=state, listen="")
        exporter = build_exporter(settings, clock=clock)
        recorder = Recorder()
        exporter.cycle._alerter._notifier = recorder  # type: ignore[union-attr]  # bench only: record, do not post
        try:
            exporter.cycle.run_once()  # the exporter is already running when the runaway starts
            started = START + dt.timedelta(seconds=offset)
            org.start_runaway(target, factor, started)
            clock.current = START + dt.timedelta(seconds=interval)
            while clock.current - started < dt.timedelta(minutes=MAX_MINUTES):
                exporter.cycle.run_once()
                if recorder.runaways:
                    return (clock.current - started).total_seconds() / 60
                clock.current += dt.timedelta(seconds=interval)
        finally:
            exporter.close()
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=300.0)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--factors", type=Decimal, nargs="+", default=[Decimal(5), Decimal(10), Decimal(20)])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the figures only (the fake's unpriced model is named per trial)
    rng = random.Random(1)  # noqa: S311 - start moments, not secrets
    print(f"interval {args.interval:g} s, {args.trials} trials per factor (start moment random in an interval)")
    for factor in args.factors:
        delays = []
        for trial in range(args.trials):
            with tempfile.TemporaryDirectory(prefix="oce-delay-") as tmp:
                delay = one_trial(factor, rng.uniform(0, args.interval), args.interval, Path(tmp) / f"t{trial}")
            if delay is not None:
                delays.append(delay)
        missed = args.trials - len(delays)
        if delays:
            print(
                f"runaway at {factor}x: detected in min {min(delays):.1f} / median {statistics.median(delays):.1f}"
                f" / max {max(delays):.1f} minutes" + (f" ({missed} not within {MAX_MINUTES} min)" if missed else "")
            )
        else:
            print(f"runaway at {factor}x: not detected within {MAX_MINUTES} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
