"""Benchmark: what a warm cycle costs at the default interval, for an organization of 2,000 projects.

The exporter runs in this process (its real cycle, real clock, default settings: usage estimates and the
runaway rule's 1-minute window on) against `fake-api` (a child process, `--latency` added to every response, so
its CPU is not counted). After a cold cycle, `--cycles` warm cycles run `--interval` seconds apart, as the loop
would run them; for each: wall time, CPU seconds of this process (all its threads: the cycle, the usage
fetch's chains, the background listings), the API requests by endpoint (the 1-minute usage requests apart), and
the 1-minute rows stored for the minutes it asked. Prints the median warm cycle. Nothing is asserted: these are
figures. It takes `--cycles` x `--interval` seconds and a cold cycle.

    python bench/warm_cycle.py [--projects 2000] [--latency 0.15] [--interval 60] [--cycles 3]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

from backfill import KEY, start_fake  # bench/backfill.py, beside this file
from scale import api_log  # bench/scale.py, beside this file

from openai_cost_exporter.app import Exporter, build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.core.clock import SystemClock
from openai_cost_exporter.core.defaults import INTERVAL_SECONDS
from openai_cost_exporter.figures.recent import plan_minutes
from openai_cost_exporter.store.state import open_state


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def endpoint(path: str, query: str) -> str:
    """The request's endpoint, usage ones with their bucket width."""
    width = dict(parse_qsl(query)).get("bucket_width")
    name = path.removeprefix("/v1").removeprefix("/organization/")
    if name.startswith("projects/"):
        name = "projects/{id}/" + name.rsplit("/", 1)[-1]
    return f"{name} ({width})" if name.startswith("usage") else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.15, help="seconds the fake adds to every response")
    parser.add_argument("--interval", type=float, default=INTERVAL_SECONDS)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    fake, base_url = start_fake(args.projects, "string", args.latency)
    rows: list[tuple[float, float, Counter[str], int]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(base_url=base_url, admin_key=KEY, state_dir=Path(tmp), listen="")
            exporter = build_exporter(settings)
            probe = open_state(settings.state_file)  # a connection of the bench's own, to count the stored rows
            try:
                started = time.monotonic()
                exporter.cycle.run_once()
                print(f"cold cycle: {time.monotonic() - started:.1f} s, {len(api_log(base_url))} requests")
                for _ in range(args.cycles):
                    time.sleep(max(0.0, started + args.interval - time.monotonic()))
                    rows.append(one_cycle(exporter, base_url, probe))
                    started = time.monotonic() - rows[-1][0]
            finally:
                exporter.close()
                probe.close()
    finally:
        fake.terminate()
        fake.wait()
    show(args, rows)


def one_cycle(exporter: Exporter, base_url: str, probe: sqlite3.Connection) -> tuple[float, float, Counter[str], int]:
    """(wall s, CPU s, requests by endpoint, 1-minute rows stored for the minutes asked) of one cycle."""
    fetch = plan_minutes(SystemClock().now())
    before = len(api_log(base_url))
    wall, cpu = time.monotonic(), cpu_seconds()
    exporter.cycle.run_once()
    wall, cpu = time.monotonic() - wall, cpu_seconds() - cpu
    requests = Counter(endpoint(path, query) for path, query in api_log(base_url)[before:])
    minute_rows = probe.execute(
        "SELECT COUNT(*) FROM usage_minutes WHERE minute >= ? AND minute < ?", (fetch.start, fetch.end)
    ).fetchone()[0]
    return wall, cpu, requests, minute_rows


def show(args: argparse.Namespace, rows: list[tuple[float, float, Counter[str], int]]) -> None:
    print(
        f"{args.projects:,} projects, {args.latency * 1000:.0f} ms added to every API response,"
        f" warm cycles {args.interval:g} s apart (median of {len(rows)})"
    )
    print(f"  wall, s: {statistics.median(r[0] for r in rows):.2f}")
    print(f"  CPU, s: {statistics.median(r[1] for r in rows):.2f} (each: {', '.join(f'{r[1]:.2f}' for r in rows)})")
    names = sorted({name for r in rows for name in r[2]})
    for name in names:
        print(f"  requests {name}: {statistics.median(r[2][name] for r in rows):g}")
    print(f"  requests in all: {statistics.median(sum(r[2].values()) for r in rows):g}")
    print(f"  1-minute rows stored for the minutes asked: {statistics.median(r[3] for r in rows):g}")


if __name__ == "__main__":
    main()
