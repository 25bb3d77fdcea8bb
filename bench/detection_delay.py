"""Benchmark: how long from the start of a runaway to its Slack message, with the default interval.

A simulated organization (the project's fake, in this process) and the exporter's real cycle, both on one
injected clock: the runaway starts at a random moment between two cycles, cycles run every `--interval` seconds
(default the exporter's, 60), the usage endpoint is `--usage-lag` seconds behind (default 120), and the delay is
the time from the runaway's start to the end of the first cycle that delivers a runaway message about it (to a
recording notifier: what Slack would get). Printed per runaway factor: minimum, median and maximum over
`--trials` start moments; then the runaway messages of a day without runaway (`--quiet-hours`, the nightly
batch's peak included), which should be none. Nothing is asserted: these are figures.

    python bench/detection_delay.py [--interval 60] [--usage-lag 120] [--trials 8] [--factors 4 5 10 20]

The rule compares the rate of the recent window (the last RECENT_MINUTES complete minutes, figures/recent.py)
with the usual rate of those minutes, so a runaway needs about 2 x RECENT_MINUTES / (factor - 1) minutes of
traffic in the window, which ends LAG_MINUTES before the current minute, plus the wait for the next cycle.
The project that runs away is "Steady Search" (a flat $2,000 a day); "Nightly Batch", "Tiny Tool" and the
others run as usual, and any runaway message about them is counted and printed as a false alarm.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import random
import statistics
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from openai_cost_exporter.app import Exporter, build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.defaults import INTERVAL_SECONDS
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


@contextlib.contextmanager
def exporter_on(clock: FrozenClock, usage_lag: float, state: Path) -> Iterator[tuple[FakeOrg, Exporter, Recorder]]:
    """The fake organization (30 projects and the rhythm ones) and an exporter on it, recording its runaways."""
    org = FakeOrg.generate(seed=11, project_count=30, clock=clock, rhythm_projects=True)
    org.usage_lag = dt.timedelta(seconds=usage_lag)
    with FakeAdminAPI(org, admin_key=KEY) as api:
        settings = load_settings(base_url=api.base_url, admin_key=KEY, state_dir=state, listen="")
        exporter = build_exporter(settings, clock=clock)
        recorder = Recorder()
        exporter.cycle._alerter._notifier = recorder  # type: ignore[union-attr]  # bench only: record, do not post
        try:
            yield org, exporter, recorder
        finally:
            exporter.close()


def one_trial(factor: Decimal, offset: float, args: argparse.Namespace, state: Path) -> tuple[float | None, int]:
    """Minutes from the runaway's start to the end of the cycle that sent its message (None: not within 3 h), and
    the runaway messages about other projects until then (false alarms)."""
    clock = FrozenClock(START)
    with exporter_on(clock, args.usage_lag, state) as (org, exporter, recorder):
        target = org.steady_search_project_id or org.projects[0].id
        exporter.cycle.run_once()  # the exporter is already running when the runaway starts
        started = START + dt.timedelta(seconds=offset)
        org.start_runaway(target, factor, started)
        clock.current = START + dt.timedelta(seconds=args.interval)
        while clock.current - started < dt.timedelta(minutes=MAX_MINUTES):
            exporter.cycle.run_once()
            others = sum(m.subject_id != target for m in recorder.runaways)
            if len(recorder.runaways) > others:
                return (clock.current - started).total_seconds() / 60, others
            clock.current += dt.timedelta(seconds=args.interval)
        return None, sum(m.subject_id != target for m in recorder.runaways)


def quiet_day(args: argparse.Namespace, state: Path) -> list[str]:
    """A day of cycles without a runaway (the nightly batch's peak included): the runaway messages it sent."""
    clock = FrozenClock(START)
    with exporter_on(clock, args.usage_lag, state) as (org, exporter, recorder):
        names = {p.id: p.name for p in org.projects}
        while clock.current < START + dt.timedelta(hours=args.quiet_hours):
            exporter.cycle.run_once()
            clock.current += dt.timedelta(seconds=args.interval)
        return [f"{names.get(m.subject_id, m.subject_id)} at {m.created_at:%H:%M}" for m in recorder.runaways]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=INTERVAL_SECONDS)
    parser.add_argument("--usage-lag", type=float, default=120.0, help="seconds the usage endpoint is behind")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--factors", type=Decimal, nargs="+", default=[Decimal(f) for f in (4, 5, 10, 20)])
    parser.add_argument("--quiet-hours", type=float, default=24.0, help="hours of the day without runaway (0: skip)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the figures only (the fake's unpriced model is named per trial)
    # A background listing still under way when a trial closes its exporter logs its closed client at ERROR:
    # the trial is over by then, and its traceback would bury the figures.
    logging.getLogger("openai_cost_exporter.ingest.directory").setLevel(logging.CRITICAL)
    rng = random.Random(1)  # noqa: S311 - start moments, not secrets
    print(
        f"interval {args.interval:g} s, usage lag {args.usage_lag:g} s, {args.trials} trials per factor"
        " (start moment random in an interval)"
    )
    for factor in args.factors:
        delays, false_alarms = [], 0
        for trial in range(args.trials):
            with tempfile.TemporaryDirectory(prefix="oce-delay-") as tmp:
                delay, others = one_trial(factor, rng.uniform(0, args.interval), args, Path(tmp) / f"t{trial}")
            false_alarms += others
            if delay is not None:
                delays.append(delay)
        missed = args.trials - len(delays)
        alarms = f"; {false_alarms} runaway messages about other projects" if false_alarms else ""
        if delays:
            print(
                f"runaway at {factor}x: detected in min {min(delays):.1f} / median {statistics.median(delays):.1f}"
                f" / max {max(delays):.1f} minutes"
                + (f" ({missed} not within {MAX_MINUTES} min)" if missed else "")
                + alarms
            )
        else:
            print(f"runaway at {factor}x: not detected within {MAX_MINUTES} minutes{alarms}")
    if args.quiet_hours > 0:
        with tempfile.TemporaryDirectory(prefix="oce-quiet-") as tmp:
            sent = quiet_day(args, Path(tmp) / "quiet")
        print(f"{args.quiet_hours:g} h without a runaway (nightly batch peak at 02:00): {len(sent)} runaway messages")
        for line in sent:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
