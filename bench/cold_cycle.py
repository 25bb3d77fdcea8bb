"""Benchmark: a cold `run --once` for an organization of 2,000 projects, 150 ms added to every API response.

Runs the exporter as a whole process (`python -m openai_cost_exporter run --once` on a fresh state dir, start-up
included, its peak RSS from wait4 through bench/peak_rss.py) against `fake-api` (a child process, so its memory is
not counted), and beside it the floor issue 12 compares it with: a bare client fetching the same pages again, each
cursor chain (the projects, the costs window, and each usage endpoint's windows when usage is on) on its own
connection, the chains side by side. Then a warm `run --once` on the same state dir. Medians of `--runs` runs.
Prints, for the billed path (`--no-usage`) and for the defaults (usage estimates on), the wall time, the floor,
their ratio (target <= 1.2), the requests (and how many were asked twice), the peak RSS (target < 60 MB) and the
warm cycle's requests (target: one costs request, plus one per usage endpoint with usage on). Nothing is asserted:
these are figures.

    python bench/cold_cycle.py [--projects 2000] [--latency 0.15] [--runs 3] [--line-items]

Hard spend limits are off (`--no-spend-limits`): their listings run in the background and `run --once` would
wait up to a minute for them after its figures are out (bench/api_keys.py measures that path).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from backfill import start_fake  # bench/backfill.py, beside this file
from scale import Run, bare_floor, run_exporter  # bench/scale.py, beside this file

RATIO_TARGET = 1.2
PEAK_RSS_TARGET_MB = 60


def cold_and_warm(base_url: str, flags: list[str], workdir: Path) -> tuple[Run, float, Run]:
    """One cold run on a fresh state dir, the bare floor of its requests, and a warm run after it."""
    state = Path(tempfile.mkdtemp(dir=workdir))
    args = ["run", "--once", "--listen", "", "--state-dir", str(state), "--no-spend-limits", *flags]
    cold = run_exporter(base_url, args, workdir)
    floor = bare_floor(base_url, cold.requests)
    warm = run_exporter(base_url, args, workdir)
    return cold, floor, warm


def report(title: str, runs: list[tuple[Run, float, Run]]) -> None:
    colds = [cold for cold, _, _ in runs]
    wall = statistics.median(c.wall for c in colds)
    floor = statistics.median(f for _, f, _ in runs)
    ratio = statistics.median(c.wall / f for c, f, _ in runs)
    peak = statistics.median(c.peak_mb for c in colds)
    asked = colds[-1].requests
    twice = sum(n - 1 for n in Counter(asked).values() if n > 1)
    by_path = Counter(path.rsplit("/", 1)[-1] for path, _ in asked)
    warm = runs[-1][2]
    codes = sorted({c.code for c in colds} | {w.code for _, _, w in runs})
    print(title)
    print(f"  cold run --once        {wall:.2f} s (median of {len(runs)}; exit codes {codes})")
    print(f"  side-by-side floor     {floor:.2f} s")
    print(f"  ratio                  {ratio:.2f} (target <= {RATIO_TARGET})")
    paths = ", ".join(f"{n} {p}" for p, n in by_path.items())
    print(f"  requests               {len(asked)}, {twice} asked twice: {paths}")
    print(f"  peak RSS               {peak:.1f} MB (target < {PEAK_RSS_TARGET_MB} MB)")
    warm_paths = Counter(path.rsplit("/", 1)[-1] for path, _ in warm.requests)
    print(f"  warm run --once        {warm.wall:.2f} s, {len(warm.requests)} request(s): {dict(warm_paths)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.15, help="seconds the fake adds to every response")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--line-items", action="store_true", help="run with --line-items")
    args = parser.parse_args()
    extra = ["--line-items"] if args.line_items else []
    fake, base_url = start_fake(args.projects, "string", args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            billed = [cold_and_warm(base_url, ["--no-usage", *extra], Path(tmp)) for _ in range(args.runs)]
            usage = [cold_and_warm(base_url, extra, Path(tmp)) for _ in range(args.runs)]
    finally:
        fake.terminate()
        fake.wait()
    items = ", line items" if args.line_items else ""
    print(f"organization {args.projects} projects, {args.latency * 1000:.0f} ms per response{items}")
    report("billed costs only (--no-usage)", billed)
    report("defaults (usage estimates on)", usage)


if __name__ == "__main__":
    main()
