"""Benchmark: how the exporter grows from 2,000 to 10,000 projects, line items on.

For each organization size, against `fake-api` (a child process, `--latency` added to every response), and with
every exporter run as a whole process (`python -m openai_cost_exporter`, start-up included, its peak RSS from
wait4 through bench/peak_rss.py):
- cold cycle: `run --once` on a fresh state dir, beside the floor: the same cost and project pages fetched by a
  bare client, the two cursor chains side by side (what issue 12 compares a cycle with);
- warm cycle: `run --once` again on that state dir;
- backfill: `backfill --days N` on a fresh state dir into a real VictoriaMetrics (a child process);
- scrapes: 200 GETs of /metrics of a running `run` (after its first cycle), median and p99.
Then the growth of each figure from the first size to the last (linear would be 5.0 for 2,000 -> 10,000).
Nothing is asserted: these are figures. It takes a few minutes.

    python bench/scale.py [--sizes 2000 10000] [--latency 0.15] [--backfill-days 60] [--scrapes 200] [--usage]

Usage estimates and hard spend limits are off (`--no-usage --no-spend-limits`) unless `--usage` is given: the
figures are those of the billed costs' path.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
from backfill import KEY, free_port, start_fake, victoria_metrics  # bench/backfill.py, beside this file

COMMAND = [sys.executable, "-m", "openai_cost_exporter"]
PEAK_RSS = Path(__file__).with_name("peak_rss.py")
BACKFILL_DONE = re.compile(r"backfill done: (\d+) days, (\d+) projects, (\d+) samples pushed, ([\d.]+) s")


@dataclass(frozen=True)
class Run:
    """One finished exporter process."""

    wall: float  # seconds, process start to exit
    peak_mb: float
    code: int
    log: str
    requests: list[tuple[str, str]]  # (path, query) of the API requests it made


def env() -> dict[str, str]:
    """This environment without the shell's exporter, OpenAI and proxy settings; the fake's key."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_")) and "proxy" not in k.lower()}
    return {**keep, "OPENAI_ADMIN_KEY": KEY, "NO_PROXY": "127.0.0.1"}


def api_log(base_url: str) -> list[tuple[str, str]]:
    reply = httpx.get(base_url.removesuffix("/v1") + "/_fake/requests", timeout=30)
    return [(path, query) for path, query in reply.json()["log"]]


def run_exporter(base_url: str, args: list[str], workdir: Path) -> Run:
    """Run one exporter command to its end; its wall time, peak RSS, exit code, log and API requests.

    Through bench/peak_rss.py, so the peak is the exporter's own, not this (larger) process's."""
    before = len(api_log(base_url))
    log_path = workdir / f"run-{time.monotonic_ns()}.log"
    figures_path = log_path.with_suffix(".rss")
    with log_path.open("wb") as log:
        argv = [sys.executable, str(PEAK_RSS), str(figures_path), *COMMAND, *args, "--base-url", base_url]
        code = subprocess.run(argv, stdout=log, stderr=log, env=env(), check=False).returncode
    wall, peak_kb = figures_path.read_text(encoding="utf-8").split()
    text = log_path.read_text(encoding="utf-8", errors="replace")
    return Run(float(wall), int(peak_kb) / 1024, code, text, api_log(base_url)[before:])


def chain_of(path: str, query: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The cursor chain a request belongs to: its path and its query without the cursor (`page`, `after`)."""
    return path, tuple((k, v) for k, v in parse_qsl(query) if k not in {"page", "after"})


def bare_floor(base_url: str, requests: list[tuple[str, str]]) -> float:
    """Seconds for a bare client to fetch the pages of `requests` again, each cursor chain (the projects, a costs
    window, a usage endpoint's window) on its own connection, the chains side by side, each page as asked."""
    headers = {"Authorization": f"Bearer {KEY}"}
    chains: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[str, str]]] = {}
    for path, query in requests:
        chains.setdefault(chain_of(path, query), []).append((path, query))

    def fetch(pages: list[tuple[str, str]]) -> None:
        with httpx.Client(headers=headers, timeout=120) as http:
            for path, query in pages:
                http.get(base_url.removesuffix("/v1") + path, params=parse_qsl(query)).raise_for_status()

    threads = [threading.Thread(target=fetch, args=(pages,)) for pages in chains.values()]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


@contextlib.contextmanager
def running_exporter(base_url: str, args: list[str], workdir: Path) -> Iterator[tuple[str, int]]:
    """`run` serving /metrics on a free port, once its first cycle is done; yields the URL and its pid."""
    port = free_port()
    argv = [*COMMAND, "run", *args, "--base-url", base_url, "--listen", f"127.0.0.1:{port}", "--interval", "3600"]
    with (workdir / "serve.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            sys.exit(f"run did not become ready; see {workdir / 'serve.log'}")
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def rss_mb(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Figures:
    """The figures of one organization size, in print order, each under its section (cold cycle, ...)."""

    values: dict[tuple[str, str], float] = field(default_factory=dict)
    notes: dict[tuple[str, str], str] = field(default_factory=dict)
    section: str = ""

    def put(self, label: str, value: float, note: str = "") -> None:
        """A figure of the current section; a label without a leading space starts a new section."""
        if not label.startswith(" "):
            self.section = label
        key = (self.section, label)
        self.values[key] = value
        if note:
            self.notes[key] = note


def measure(projects: int, args: argparse.Namespace, workdir: Path) -> Figures:
    """Every figure for an organization of `projects` projects."""
    figures = Figures()
    flags = ["--line-items"] + ([] if args.usage else ["--no-usage", "--no-spend-limits"])
    fake, base_url = start_fake(projects, "string", args.latency)
    try:
        state = workdir / f"state-{projects}"
        cold = run_exporter(base_url, ["run", "--once", "--listen", "", "--state-dir", str(state), *flags], workdir)
        floor = bare_floor(base_url, cold.requests)
        figures.put("cold cycle, s", cold.wall, f"exit {cold.code}")
        figures.put("  bare side-by-side fetch (floor), s", floor)
        figures.put("  ratio to the floor", cold.wall / floor)
        figures.put("  peak RSS, MB", cold.peak_mb)
        figures.put("  API requests", len(cold.requests), f"{len(set(cold.requests))} distinct")
        warm = run_exporter(base_url, ["run", "--once", "--listen", "", "--state-dir", str(state), *flags], workdir)
        figures.put("warm cycle, s", warm.wall, f"exit {warm.code}")
        figures.put("  peak RSS, MB", warm.peak_mb)
        figures.put("  API requests", len(warm.requests))
        measure_backfill(figures, base_url, args.backfill_days, workdir / f"backfill-{projects}")
        measure_scrapes(figures, base_url, args.scrapes, state, flags, workdir)
    finally:
        fake.terminate()
        fake.wait()
    return figures


def measure_backfill(figures: Figures, base_url: str, days: int, workdir: Path) -> None:
    workdir.mkdir()
    with victoria_metrics(workdir) as (vm_url, _):
        push = ["--push-url", f"{vm_url}/api/v1/import/prometheus"]
        args = ["backfill", "--days", str(days), "--state-dir", str(workdir / "state"), *push, "--line-items"]
        run = run_exporter(base_url, args, workdir)
    done = BACKFILL_DONE.search(run.log)
    samples, inside = (int(done[3]), float(done[4])) if done else (0, float("nan"))
    figures.put(f"backfill {days} days, s", run.wall, f"exit {run.code}; {inside:.1f} s inside the command")
    figures.put("  samples pushed", samples)
    figures.put("  samples/s (inside the command)", samples / inside if inside else float("nan"))
    figures.put("  peak RSS, MB", run.peak_mb)
    figures.put("  API requests", len(run.requests))


def measure_scrapes(figures: Figures, base_url: str, count: int, state: Path, flags: list[str], workdir: Path) -> None:
    with running_exporter(base_url, ["--state-dir", str(state), *flags], workdir) as (url, pid), httpx.Client() as http:
        times, size = [], 0
        for _ in range(count):
            started = time.perf_counter()
            reply = http.get(f"{url}/metrics", timeout=60)
            times.append(time.perf_counter() - started)
            size = len(reply.content)
        series = sum(1 for line in reply.text.splitlines() if line and not line.startswith("#"))
        serving = rss_mb(pid, "VmHWM")
    cuts = statistics.quantiles(times, n=100)
    figures.put(f"/metrics scrape, median of {count}, ms", statistics.median(times) * 1000)
    figures.put("  p99, ms", cuts[98] * 1000)
    figures.put("  body, KB", size / 1024, f"{series:,} samples")
    figures.put("  serving process peak RSS, MB", serving)


def show(sizes: list[int], results: list[Figures]) -> None:
    keys = list(results[0].values)
    width = max(len(label) for _, label in keys) + 2
    print(f"{'figure':<{width}}" + "".join(f"{size:>12,}" for size in sizes) + f"{'growth':>10}")
    for key in keys:
        row = [r.values.get(key, float("nan")) for r in results]
        growth = row[-1] / row[0] if row[0] else float("nan")
        cells = "".join(f"{v:>12,.0f}" if isinstance(v, int) or v >= 1000 else f"{v:>12,.2f}" for v in row)
        notes = "; ".join(f"{size:,}: {r.notes[key]}" for size, r in zip(sizes, results, strict=True) if key in r.notes)
        print(f"{key[1]:<{width}}{cells}{growth:>9.2f}x" + (f"  ({notes})" if notes else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--latency", type=float, default=0.15, help="seconds the fake adds to every response")
    parser.add_argument("--backfill-days", type=int, default=60)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--usage", action="store_true", help="keep usage estimates and spend limits on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(size, args, Path(tmp)) for size in args.sizes]
    usage = "on" if args.usage else "off"
    print(f"line items on, {args.latency * 1000:.0f} ms added to every API response, usage {usage}")
    show(args.sizes, results)


if __name__ == "__main__":
    main()
