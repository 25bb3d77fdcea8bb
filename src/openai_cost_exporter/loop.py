"""The loop that runs cycles: every interval, and just after UTC midnight so two days never mix."""

from __future__ import annotations

import datetime as dt
import logging
import threading

from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.clock import Clock
from openai_cost_exporter.core.models import end_of
from openai_cost_exporter.service import CostCycle

log = logging.getLogger(__name__)

#: Wake this long after UTC midnight, so the first cycle of a day asks for the new day.
MIDNIGHT_MARGIN = 1.0
#: How often the main thread wakes, while cycles run, to run a signal handler another thread received.
SIGNAL_POLL_SECONDS = 0.25


def seconds_until_next(now: dt.datetime, interval: float) -> float:
    """Sleep until the next interval, or until just after UTC midnight when that comes first (days never mix)."""
    midnight = end_of(now.date())
    return max(0.0, min(interval, (midnight - now).total_seconds() + MIDNIGHT_MARGIN))


def run_forever(cycle: CostCycle, clock: Clock, interval: float, stop: threading.Event) -> None:
    """Run cycles until `stop` is set; a cycle's failure never ends the loop."""
    while not stop.is_set():
        try:
            # The first cycle waits (bounded) for the key and limit listings it asks: its figures carry the names.
            cycle.run_once(listings_wait=defaults.LISTINGS_WAIT_SECONDS if cycle.cycles_done == 0 else 0.0)
        except Exception:  # a bug must not silently end the loop of a process that keeps serving /metrics
            log.exception("cycle crashed; the next one runs as scheduled")
            cycle.count_crash()
        stop.wait(seconds_until_next(clock.now(), interval))


def run_in_thread(cycle: CostCycle, clock: Clock, interval: float, stop: threading.Event, *, grace: float) -> bool:
    """`run_forever` in a daemon thread until `stop` is set; whether a cycle is still running `grace` seconds later.

    This thread waits in short, timed waits: a SIGTERM the kernel hands to another thread (the listings', the HTTP
    server's) runs its Python handler only once the main thread wakes, and an untimed wait would never see it."""
    loop = threading.Thread(target=run_forever, args=(cycle, clock, interval, stop), name="cycles", daemon=True)
    loop.start()
    try:
        while not stop.wait(SIGNAL_POLL_SECONDS):
            pass
    finally:
        stop.set()
        loop.join(timeout=grace)
    return loop.is_alive()
