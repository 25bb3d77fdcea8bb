"""Benchmark: what `--api-keys` costs a cold cycle, and that a warm cycle asks no key names.

1. `run --once` as a whole process on a fresh state dir, against the fake API (a child process, 150 ms added to
   every response), with and without `--api-keys`: the median time from process start to the cycle's log line (its
   figures are out), and their ratio (target: within 1.5x); then the whole process, which waits (60 s at most) for
   the key names and spend limits listed in the background, and its peak RSS.
2. In-process: a cold cycle with `--api-keys`, then its background listings allowed to finish (the fake's latency
   set to 0 and the listings unpaced meanwhile, to keep the bench short), a cycle that sends the messages the
   listed limits make due, then a warm cycle: its requests by endpoint (target: one costs request plus the usage
   requests, no key listing).

    python bench/api_keys.py [--projects 2000] [--latency 0.15] [--runs 3] [--no-usage]

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import httpx
from backfill import KEY, start_fake  # bench/backfill.py, beside this file
from scale import COMMAND, PEAK_RSS  # bench/scale.py, beside this file

from openai_cost_exporter import app
from openai_cost_exporter.app import build_exporter
from openai_cost_exporter.config import load_settings
from openai_cost_exporter.ingest.directory import Directory


def control(base_url: str) -> str:
    return base_url.removesuffix("/v1") + "/_fake"


def cold_run(base_url: str, extra: list[str]) -> tuple[float, float, float, bool]:
    """Process start to the cycle's log line, the whole process (with its wait for the background listings), peak
    RSS (MB) of one `run --once` on a fresh state dir, and whether it exited 0."""
    with tempfile.TemporaryDirectory() as tmp:
        figures = Path(tmp) / "peak.rss"
        cmd = [sys.executable, str(PEAK_RSS), str(figures)]  # its peak RSS, not this larger process's (peak_rss.py)
        cmd += [*COMMAND, "run", "--once", "--base-url", base_url, "--state-dir", tmp, "--listen", "", *extra]
        env = {**os.environ, "OPENAI_ADMIN_KEY": KEY}
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        cycle = math.nan
        for line in proc.stderr:  # the cycle's figures are out at its log line; then the listings are waited for
            if "service: cycle " in line:
                cycle = time.perf_counter() - began
        code = proc.wait()
        wall = time.perf_counter() - began
        peak_kb = int(figures.read_text(encoding="utf-8").split()[1])
    return cycle, wall, peak_kb / 1024, code == 0


def warm_requests(base_url: str, latency: float, extra: dict[str, object]) -> tuple[Counter[str], int]:
    """Requests by endpoint of a warm cycle, once the cold cycle's background listings are all stored."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            admin_key=KEY, base_url=base_url, state_dir=Path(tmp), listen="", api_keys=True, **extra
        )
        # The listings unpaced, and the fake without latency while they run: the bench need not wait minutes.
        with mock.patch.object(app, "Directory", functools.partial(Directory, rate=None)):
            exporter = build_exporter(settings)
        try:
            exporter.cycle.run_once()
            httpx.post(f"{control(base_url)}/faults", json={"latency_seconds": 0.0}, timeout=10)
            directory = exporter.cycle._directory
            assert directory is not None
            while directory._directory.pending:
                time.sleep(0.5)
            directory.store_arrived()
            exporter.cycle.run_once()  # the messages the listed limits make due (and their line items request)
            httpx.post(f"{control(base_url)}/faults", json={"latency_seconds": latency}, timeout=10)
            before = len(httpx.get(f"{control(base_url)}/requests", timeout=10).json()["log"])
            report = exporter.cycle.run_once()
            log = httpx.get(f"{control(base_url)}/requests", timeout=10).json()["log"][before:]
        finally:
            exporter.close()
    paths = Counter("api_keys" if path.endswith("/api_keys") else path.rsplit("/", 1)[-1] for path, _ in log)
    return paths, report.listings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-usage", action="store_true", help="both cycles without the usage endpoints")
    args = parser.parse_args()
    common = ["--no-usage"] if args.no_usage else []
    fake, base_url = start_fake(args.projects, "string", args.latency)
    try:
        figures: dict[str, list[tuple[float, float, float, bool]]] = {"without": [], "with": []}
        for _ in range(args.runs):  # interleaved, so a noisy moment of the machine hits both alike
            figures["without"].append(cold_run(base_url, common))
            figures["with"].append(cold_run(base_url, [*common, "--api-keys"]))
        paths, listings = warm_requests(base_url, args.latency, {"usage": not args.no_usage})
    finally:
        fake.terminate()
        fake.wait()
    print(f"organization        {args.projects} projects, {args.latency * 1000:.0f} ms per response")
    print(f"usage               {'off' if args.no_usage else 'on'} in both; median of {args.runs} interleaved runs")
    cycles = {}
    for name, runs in figures.items():
        cycles[name] = statistics.median(cycle for cycle, _, _, _ in runs)
        wall = statistics.median(wall for _, wall, _, _ in runs)
        rss = statistics.median(mb for _, _, mb, _ in runs)
        ok = all(done for _, _, _, done in runs)
        print(
            f"cold run --once     {name:8} --api-keys: figures out after {cycles[name]:.2f} s (process start"
            f" included), process {wall:.1f} s with its wait for the listings, peak RSS {rss:.0f} MB, exit 0: {ok}"
        )
    print(f"ratio               {cycles['with'] / cycles['without']:.2f} (target <= 1.5)")
    listed = paths.pop("api_keys", 0)
    print(f"warm cycle          {dict(paths)}; key listings {listed} (target 0); listings in the background {listings}")


if __name__ == "__main__":
    main()
