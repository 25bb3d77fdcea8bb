"""Benchmark: the scorecard of the labelled calendar corpus (issue 20), replayed through the live decision.

    python bench/alert_quality.py [--scenarios calendar young-9d ...] [--every 60] [--fine 5]

Each scenario of `fake/scenarios.py` (ordinary calendars, young organizations, a lasting change, spike days and
runaways) is replayed in-process (`fake/replay.py`: the cycle's own fetch, estimates, snapshot, figures and
decision, the clock injected) every hour of its scored period and every 5 minutes for 3 hours from each runaway's
start, and scored against its labels (`fake/scorecard.py`): messages per scenario by rule and level, false alarms
per 100 project-weeks, incidents missed, messages per incident, detection delay per runaway. Nothing is asserted
(tests/test_alert_scorecard.py holds the targets); the replay's time is printed last.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time

from openai_cost_exporter.fake.replay import FINE
from openai_cost_exporter.fake.scenarios import corpus
from openai_cost_exporter.fake.scorecard import render, replay_scenario
from openai_cost_exporter.rules import AlertPolicy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="*", help="names (default: all)")
    parser.add_argument("--every", type=float, default=60.0, help="minutes between the scored moments")
    parser.add_argument(
        "--fine", type=float, default=FINE.total_seconds() / 60, help="minutes between moments as a runaway starts"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the scorecard only (the fake's unpriced model is named once)
    chosen = [s for s in corpus() if not args.scenarios or s.name in args.scenarios]
    started, cpu = time.perf_counter(), time.process_time()
    scores, names = [], {}
    for scenario in chosen:
        one, names[scenario.name] = replay_scenario(
            scenario,
            AlertPolicy(),
            every=dt.timedelta(minutes=args.every),
            fine=dt.timedelta(minutes=args.fine),
        )
        scores.append(one)
    print(render(scores, names))
    print(
        f"\nreplayed {len(chosen)} scenarios in {time.perf_counter() - started:.1f} s"
        f" ({time.process_time() - cpu:.1f} s CPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
