"""Benchmark: a 180-day backfill with line items for an organization of 2,000 projects (3 line items each).

Times `backfill.backfill` in-process against the fake API (`fake-api`, a child process, so its memory is not
counted) and a real VictoriaMetrics (a child process in a temporary directory), then prints the wall time, the
samples pushed, samples per second (issue 12: at least 5x the 24,200/s it had, so 121,000/s), the peak RSS of this
process (target < 80 MB), the CPU seconds VictoriaMetrics and the fake spent meanwhile (the machine's other
work: with two cores, their sum over two bounds what any exporter could do), and reads back every sample pushed
from VictoriaMetrics to compare it with the ledger (and one random project's day with a bare API request).
Then the push floor: the same pushes, recorded on the way, sent again one after another by a bare client into a
fresh VictoriaMetrics, nothing fetched or stored: the samples per second this VictoriaMetrics allows here.
Nothing is asserted: these are figures.

    python bench/backfill.py [--projects 2000] [--days 180] [--amounts string] [--latency 0]
                             [--windows 2] [--pages 2] [--profile]

`--windows` sets how many cost windows are fetched side by side (1: one after another) and `--pages` how many
pages may be held at once (backfill.FETCH_WINDOWS, PAGES_AT_ONCE); `--profile` runs the backfill under cProfile
and prints where the time went (cumulative, top 25).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import functools
import json
import pstats
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from openai_cost_exporter import backfill as backfill_module
from openai_cost_exporter.backfill import BackfillResult, backfill
from openai_cost_exporter.core.models import day_start
from openai_cost_exporter.export.collector import DAILY_COST, LINE_ITEM_COST, day_sample_time
from openai_cost_exporter.export.push import Pusher
from openai_cost_exporter.sources.openai.client import AdminClient, build_http_client
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state

KEY = "sk-admin-bench"
PEAK_RSS_TARGET_MB = 80
BASELINE_SAMPLES_PER_S = 24_200  # issue 12 and the README before it: 1,064,413 samples in 43.9 s
TARGET_FACTOR = 5
DAY = dt.timedelta(days=1)


def start_fake(projects: int, amounts: str = "string", latency: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    """`fake-api` as a child process on a free port; returns it and its base URL."""
    cmd = [sys.executable, "-m", "openai_cost_exporter", "fake-api", "--port", "0", "--key", KEY]
    cmd += ["--projects", str(projects), "--amounts", amounts, "--latency", str(latency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "fake OpenAI Admin API on http://127.0.0.1:PORT/v1 ..."
    return proc, line.split(" on ", 1)[1].split()[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def victoria_metrics(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """VictoriaMetrics as the README runs it (1 ms dedup), on a free loopback port; yields its URL."""
    binary = shutil.which("victoria-metrics")
    if binary is None:
        sys.exit("victoria-metrics not found: apt-get install --no-install-recommends victoria-metrics")
    port = free_port()
    argv = [
        binary, f"-storageDataPath={workdir / 'vmdata'}", f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms", "-search.latencyOffset=0s", "-search.disableCache",
    ]  # fmt: skip
    with (workdir / "vm.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("victoria-metrics did not start; see its log")
            time.sleep(0.02)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory of this process (getrusage) or of another one (VmHWM in /proc)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used so far (/proc/PID/stat, in clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def run_backfill(
    base_url: str, vm_url: str, state: Path, days: int, profile: bool = False, record: Path | None = None
) -> BackfillResult:
    """One `backfill` of `days` closed days with line items into `state`, pushed to `vm_url` with job=bench;
    with `record`, every push (its URL and body) is appended to that file, for `push_floor`."""
    today = dt.datetime.now(dt.UTC).date()
    conn = open_state(state)
    profiler = cProfile.Profile() if profile else None
    hooks = {"request": [functools.partial(_record, record)]} if record is not None else {}
    try:
        with (
            build_http_client(base_url, KEY, timeout=120) as api_http,
            httpx.Client(timeout=120, event_hooks=hooks) as vm_http,
        ):
            pusher = Pusher(vm_http, f"{vm_url}/api/v1/import/prometheus", {"job": "bench"})
            if profiler is not None:
                profiler.enable()
            result = backfill(
                AdminClient(api_http),
                Ledger(conn),
                pusher,
                start=today - dt.timedelta(days=days),
                end=today,
                now=dt.datetime.now(dt.UTC),
                line_items=True,
            )
            if profiler is not None:
                profiler.disable()
    finally:
        conn.close()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return result


def _record(path: Path, request: httpx.Request) -> None:
    """Append one push to `path`: its URL, its body's length, and the body."""
    with path.open("ab") as out:
        out.write(f"{request.url}\n{len(request.content)}\n".encode())
        out.write(request.content)


def _recorded(path: Path, vm_url: str) -> Iterator[tuple[str, bytes]]:
    """The pushes `_record` wrote, one at a time, their URLs moved to `vm_url`."""
    with path.open("rb") as pushes:
        while url := pushes.readline().decode().strip():
            size = int(pushes.readline())
            parts = urlsplit(url)
            yield f"{vm_url}{parts.path}?{parts.query}", pushes.read(size)


def push_floor(recorded: Path, workdir: Path) -> tuple[float, float]:
    """The pushes of a backfill sent again, one after another, by a bare client into a fresh VictoriaMetrics:
    seconds until its flush, and its CPU seconds. The bound VictoriaMetrics itself sets on this machine."""
    with victoria_metrics(workdir) as (vm_url, vm), httpx.Client(timeout=120) as http:
        cpu, started = cpu_seconds(vm.pid), time.perf_counter()
        for url, body in _recorded(recorded, vm_url):
            http.post(url, content=body, headers={"Content-Type": "text/plain"}).raise_for_status()
        http.get(f"{vm_url}/internal/force_flush").raise_for_status()
        return time.perf_counter() - started, cpu_seconds(vm.pid) - cpu


def api_truth(base_url: str, project_id: str, day: dt.date) -> Decimal:
    """One project's total of one day, read straight from the API with a bare client (not the exporter's)."""
    params = {
        "start_time": day_start(day),
        "end_time": day_start(day + DAY),
        "bucket_width": "1d",
        "project_ids": project_id,
        "group_by": "project_id",
    }
    body = httpx.get(f"{base_url}/organization/costs", params=params, headers={"Authorization": f"Bearer {KEY}"})
    results = body.json()["data"][0]["results"]
    return sum((Decimal(str(r["amount"]["value"])) for r in results if r["project_id"] == project_id), Decimal(0))


def exported(vm_url: str, metric: str) -> dict[tuple[str, ...], dict[int, float]]:
    """Every raw sample of `metric`{job="bench"} in VictoriaMetrics: per (project_id[, line_item]), ms -> value."""
    httpx.get(f"{vm_url}/internal/force_flush", timeout=30).raise_for_status()
    params = {"match[]": f'{metric}{{job="bench"}}', "start": "0", "end": str(time.time() + 86400)}
    out: dict[tuple[str, ...], dict[int, float]] = {}
    with httpx.stream("GET", f"{vm_url}/api/v1/export", params=params, timeout=120) as reply:
        for line in reply.iter_lines():
            series = json.loads(line)
            labels = series["metric"]
            key = (labels["project_id"], labels["line_item"]) if "line_item" in labels else (labels["project_id"],)
            samples = out.setdefault(key, {})
            for stamp, value in zip(series["timestamps"], series["values"], strict=True):
                assert stamp not in samples, f"two samples at {stamp} for {key}"  # dedup keeps one
                samples[stamp] = value
    return out


@dataclass
class Check:
    samples: int = 0
    mismatches: int = 0
    worst: float = 0.0  # largest relative difference seen


def compare(
    check: Check, want: dict[tuple[str, ...], float], got: dict[tuple[str, ...], dict[int, float]], ms: int
) -> None:
    """Count the expected samples of one day (`want`) that VictoriaMetrics holds at `ms`, within its precision."""
    for key, value in want.items():
        check.samples += 1
        seen = got.get(key, {}).get(ms)
        if seen is None:
            check.mismatches += 1
            continue
        diff = abs(seen - value) / max(abs(value), 1e-12)
        check.worst = max(check.worst, diff)
        check.mismatches += diff > 1e-11  # VictoriaMetrics keeps about 12 significant digits


def check_all(vm_url: str, state: Path, today: dt.date, days: int) -> str:
    """Every closed day of the ledger against what VictoriaMetrics reads back: project totals (0 for an active
    project without rows that day) and line items, each at its day's 23:59:59."""
    daily, items = exported(vm_url, DAILY_COST), exported(vm_url, LINE_ITEM_COST)
    conn = open_state(state)
    check = Check()
    try:
        ledger = Ledger(conn)
        closed = [today - n * DAY for n in range(days, 0, -1)]
        active = {pid for day in closed for pid in ledger.project_totals(day, day + DAY).get(day, {})}
        for day in closed:
            ms = int(day_sample_time(day) * 1000)
            totals = ledger.project_totals(day, day + DAY).get(day, {})
            compare(check, {(pid,): float(totals.get(pid, 0)) for pid in active}, daily, ms)
            cells = ledger.line_item_totals(day, day + DAY).get(day, {})
            compare(check, {key: float(amount) for key, amount in cells.items()}, items, ms)
    finally:
        conn.close()
    stored = sum(len(s) for s in daily.values()) + sum(len(s) for s in items.values())
    verdict = "OK" if check.mismatches == 0 and stored == check.samples else "MISMATCH"
    return (
        f"{check.samples:,} samples compared, {stored:,} stored, {check.mismatches} differ"
        f" (largest relative difference {check.worst:.1e}) -> {verdict}"
    )


def check_one(base_url: str, vm_url: str, state: Path, today: dt.date, days: int) -> str:
    """Compare one random (project, day) of VictoriaMetrics with a bare read of the API; a printable verdict."""
    day = today - dt.timedelta(days=random.randint(1, days))  # noqa: S311 - a sample, not a secret
    conn = open_state(state)
    try:
        with_rows = Ledger(conn).project_totals(day, day + DAY).get(day, {})
    finally:
        conn.close()
    project_id = random.choice(sorted(with_rows))  # noqa: S311
    got = exported(vm_url, DAILY_COST).get((project_id,), {}).get(int(day_sample_time(day) * 1000))
    want = api_truth(base_url, project_id, day)
    ok = got is not None and abs(got - float(want)) <= 1e-11 * max(1.0, float(want))
    return f"{project_id} {day}: VictoriaMetrics {got}, API {want} -> {'OK' if ok else 'MISMATCH'}"


@dataclass(frozen=True)
class Measured:
    result: BackfillResult
    rss_before: float
    rss_peak: float
    vm_cpu: float
    fake_cpu: float
    floor: tuple[float, float]  # push_floor: seconds, VictoriaMetrics' CPU seconds
    verdicts: tuple[str, ...]


def measure(projects: int, days: int, amounts: str, latency: float, profile: bool, verify: bool) -> Measured:
    """Start the fake and VictoriaMetrics, run one backfill, and read its figures (peak RSS before any check)."""
    fake, base_url = start_fake(projects, amounts, latency)
    try:
        with tempfile.TemporaryDirectory() as tmp, victoria_metrics(Path(tmp)) as (vm_url, vm):
            state = Path(tmp) / "state.sqlite3"
            rss_before = peak_rss_mb()
            vm_cpu, fake_cpu = cpu_seconds(vm.pid), cpu_seconds(fake.pid)
            recorded = Path(tmp) / "pushes"
            result = run_backfill(base_url, vm_url, state, days, profile, recorded)
            vm_cpu, fake_cpu = cpu_seconds(vm.pid) - vm_cpu, cpu_seconds(fake.pid) - fake_cpu
            rss_peak = peak_rss_mb()
            today = dt.datetime.now(dt.UTC).date()
            verdicts: tuple[str, ...] = ()
            if verify:
                verdicts = (check_all(vm_url, state, today, days), check_one(base_url, vm_url, state, today, days))
            vm.terminate()  # its CPU is not the floor's
            vm.wait()
            (Path(tmp) / "floor").mkdir()
            floor = push_floor(recorded, Path(tmp) / "floor")
    finally:
        fake.terminate()
        fake.wait()
    return Measured(result, rss_before, rss_peak, vm_cpu, fake_cpu, floor, verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--amounts", choices=["number", "string", "mixed"], default="string")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the fake adds to every response")
    parser.add_argument("--windows", type=int, default=backfill_module.FETCH_WINDOWS)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--pages", type=int, default=backfill_module.PAGES_AT_ONCE, help="pages held at once, at most")
    args = parser.parse_args()
    backfill_module.FETCH_WINDOWS = args.windows
    backfill_module.PAGES_AT_ONCE = args.pages
    m = measure(args.projects, args.days, args.amounts, args.latency, args.profile, verify=True)
    rate = m.result.samples / m.result.duration
    target = TARGET_FACTOR * BASELINE_SAMPLES_PER_S
    print(f"organization    {args.projects} projects x 3 line items, {args.days} days, {args.amounts} amounts")
    fetch = f"{args.windows} window(s) side by side, {args.pages} pages at once at most"
    print(f"fetch           {fetch}, {args.latency * 1000:.0f} ms added per response")
    print(f"wall time       {m.result.duration:.2f} s")
    print(f"samples pushed  {m.result.samples:,} ({m.result.projects} projects with costs)")
    print(
        f"samples/s       {rate:,.0f} ({rate / BASELINE_SAMPLES_PER_S:.1f}x the 24,200/s of issue 12;"
        f" target {target:,})"
    )
    print(f"peak RSS        {m.rss_peak:.1f} MB (target < {PEAK_RSS_TARGET_MB} MB; {m.rss_before:.1f} MB before)")
    print(f"other CPU       VictoriaMetrics {m.vm_cpu:.1f} s, fake API {m.fake_cpu:.1f} s (their own processes)")
    floor_s, floor_cpu = m.floor
    print(
        f"push floor      {floor_s:.2f} s, {m.result.samples / floor_s:,.0f} samples/s: the same pushes replayed by a"
        f" bare client into a fresh VictoriaMetrics, nothing fetched or stored ({floor_cpu:.1f} s of its CPU)"
    )
    for verdict in m.verdicts:
        print(f"check           {verdict}")


if __name__ == "__main__":
    main()
