"""Benchmark: a 180-day backfill with line items for an organization of 2,000 projects (3 line items each).

Times `backfill_pages` in-process against the fake API (a child process, so its memory is not counted) and a real
VictoriaMetrics (a child process in a temporary directory), then prints the wall time, the samples pushed, samples
per second, the peak RSS of this process (target < 150 MB) and of the fake, and checks one random project's day in
VictoriaMetrics against a direct read of the API.

    python bench/backfill.py [--projects 2000] [--days 180] [--amounts string] [--profile]

`--profile` runs the backfill under cProfile and prints where the time went (cumulative, top 25).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
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
from decimal import Decimal
from pathlib import Path

import httpx

from openai_cost_exporter.backfill import BackfillResult, backfill_pages
from openai_cost_exporter.collector import day_sample_time
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.models import day_start
from openai_cost_exporter.openai_client import AdminClient, build_http_client
from openai_cost_exporter.push import Pusher
from openai_cost_exporter.state import open_state

KEY = "sk-admin-bench"
PEAK_RSS_TARGET_MB = 150


def start_fake(projects: int, amounts: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "openai_cost_exporter", "fake-api", "--port", "0", "--key", KEY]
    cmd += ["--projects", str(projects), "--amounts", amounts]
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


def run(base_url: str, vm_url: str, state: Path, days: int, profile: bool) -> tuple[BackfillResult, dt.date]:
    today = dt.datetime.now(dt.UTC).date()
    conn = open_state(state)
    profiler = cProfile.Profile() if profile else None
    try:
        with build_http_client(base_url, KEY, timeout=120) as api_http, httpx.Client(timeout=120) as vm_http:
            pusher = Pusher(vm_http, f"{vm_url}/api/v1/import/prometheus", {"job": "bench"})
            if profiler is not None:
                profiler.enable()
            result = backfill_pages(
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
    return result, today


def api_truth(base_url: str, project_id: str, day: dt.date) -> Decimal:
    """One project's total of one day, read straight from the API with a bare client (not the exporter's)."""
    params = {
        "start_time": day_start(day),
        "end_time": day_start(day + dt.timedelta(days=1)),
        "bucket_width": "1d",
        "project_ids": project_id,
        "group_by": "project_id",
    }
    body = httpx.get(f"{base_url}/organization/costs", params=params, headers={"Authorization": f"Bearer {KEY}"})
    results = body.json()["data"][0]["results"]
    return sum((Decimal(str(r["amount"]["value"])) for r in results if r["project_id"] == project_id), Decimal(0))


def check_one(base_url: str, vm_url: str, state: Path, today: dt.date, days: int) -> str:
    """Compare one random (project, day) of VictoriaMetrics with the API; return a printable verdict."""
    day = today - dt.timedelta(days=random.randint(1, days))  # noqa: S311 - a sample, not a secret
    conn = open_state(state)
    try:
        with_rows = Ledger(conn).project_totals(day, day + dt.timedelta(days=1)).get(day, {})
    finally:
        conn.close()
    project_id = random.choice(sorted(with_rows))  # noqa: S311
    httpx.get(f"{vm_url}/internal/force_flush", timeout=30).raise_for_status()
    params = {"match[]": f'openai_daily_cost_usd{{project_id="{project_id}"}}', "start": "0"}
    params["end"] = str(time.time() + 86400)
    lines = httpx.get(f"{vm_url}/api/v1/export", params=params, timeout=30).text.splitlines()
    stamp = int(day_sample_time(day) * 1000)
    values = [
        v
        for series in map(json.loads, lines)
        for t, v in zip(series["timestamps"], series["values"], strict=True)
        if t == stamp
    ]
    closed = sum(1 for series in map(json.loads, lines) for t in series["timestamps"] if t < day_start(today) * 1000)
    want = api_truth(base_url, project_id, day)
    ok = len(values) == 1 and abs(values[0] - float(want)) <= 1e-9 * max(1.0, float(want)) and closed == days
    verdict = "OK" if ok else "MISMATCH"
    return f"{project_id} {day}: VictoriaMetrics {values} ({closed} daily samples), API {want} -> {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--amounts", choices=["number", "string", "mixed"], default="string")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    fake, base_url = start_fake(args.projects, args.amounts)
    try:
        with tempfile.TemporaryDirectory() as tmp, victoria_metrics(Path(tmp)) as (vm_url, _):
            state = Path(tmp) / "state.sqlite3"
            rss_before = peak_rss_mb()
            result, today = run(base_url, vm_url, state, args.days, args.profile)
            rss_peak = peak_rss_mb()
            fake_peak = peak_rss_mb(fake.pid)
            verdict = check_one(base_url, vm_url, state, today, args.days)
            state_mb = state.stat().st_size / 2**20
    finally:
        fake.terminate()
        fake.wait()
    print(f"organization    {args.projects} projects x 3 line items, {args.days} days, {args.amounts} amounts")
    print(f"wall time       {result.duration:.2f} s")
    print(f"samples pushed  {result.samples:,} ({result.projects} projects with costs)")
    print(f"samples/s       {result.samples / result.duration:,.0f}")
    print(f"peak RSS        {rss_peak:.1f} MB (target < {PEAK_RSS_TARGET_MB} MB; {rss_before:.1f} MB before)")
    print(f"fake API RSS    {fake_peak:.1f} MB (its own process)")
    print(f"state file      {state_mb:.1f} MB")
    print(f"check           {verdict}")


if __name__ == "__main__":
    main()
