"""Benchmark: one cold cycle for an organization of 2,000 projects, 150 ms added to every API response.

Prints the cycle's wall time, the wall time of fetching the same pages one after another with a bare HTTP
client, their ratio (target <= 1.0), the number of requests, the peak RSS of this process (target < 100 MB),
and the requests of a warm cycle (target: exactly 1).

    python bench/cold_cycle.py [--projects 2000] [--latency 0.15]

The fake API runs in a child process, so its memory is not counted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

import httpx
from backfill import KEY, start_fake  # bench/backfill.py, beside this file
from prometheus_client import CollectorRegistry

from openai_cost_exporter.clock import SystemClock
from openai_cost_exporter.ledger import Ledger
from openai_cost_exporter.models import day_start
from openai_cost_exporter.openai_client import AdminClient, build_http_client, costs_page_days
from openai_cost_exporter.selfmetrics import RequestCounter, SelfMetrics
from openai_cost_exporter.service import CostCycle, CycleOptions
from openai_cost_exporter.state import open_state


def requests_seen(base_url: str) -> list[tuple[str, str]]:
    """(path, query) of every API request the fake has answered."""
    response = httpx.get(base_url.removesuffix("/v1") + "/_fake/requests", timeout=10)
    return [(path, query) for path, query in response.json()["log"]]


def sequential_fetch(base_url: str, start: dt.date, end: dt.date) -> tuple[float, int]:
    """The same pages, one after another, with a bare client: the floor a cycle is compared against."""
    headers = {"Authorization": f"Bearer {KEY}"}
    requests = 0
    began = time.perf_counter()
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        after = None
        while True:
            params: dict[str, str | int] = {"limit": 100, "include_archived": "true"}
            if after:
                params["after"] = after
            body = http.get("/organization/projects", params=params).json()
            requests += 1
            if not body["has_more"]:
                break
            after = body["last_id"]
        page = None
        while True:
            params = {
                "start_time": day_start(start),
                "end_time": day_start(end),
                "bucket_width": "1d",
                "group_by": "project_id",
                "limit": min((end - start).days, costs_page_days(line_items=False)),  # the cycle's pages
            }
            if page:
                params["page"] = page
            body = http.get("/organization/costs", params=params).json()
            requests += 1
            if not body["has_more"]:
                break
            page = body["next_page"]
    return time.perf_counter() - began, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.15)
    args = parser.parse_args()
    fake, base_url = start_fake(args.projects, "string", args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp, build_http_client(base_url, KEY, timeout=60) as http:
            conn = open_state(Path(tmp) / "state.sqlite3")
            metrics = SelfMetrics(CollectorRegistry())
            requests = RequestCounter(metrics.count_request)  # the cycle reports its requests from this counter
            clock = SystemClock()
            cycle = CostCycle(
                source=AdminClient(http, on_request=requests),
                ledger=Ledger(conn),
                clock=clock,
                metrics=metrics,
                options=CycleOptions(),
                requests=requests,
            )
            start = cycle.fetch_start(clock.now())
            began = time.perf_counter()
            cold = cycle.run_once()
            cold_wall = time.perf_counter() - began
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            log = requests_seen(base_url)
            cold_requests, distinct = len(log), len(set(log))
            warm = cycle.run_once()
            conn.close()
        seq_wall, seq_requests = sequential_fetch(
            base_url, start, dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
        )
    finally:
        fake.terminate()
        fake.wait()
    print(f"organization          {args.projects} projects, {args.latency * 1000:.0f} ms per response")
    print(f"cold cycle            {cold_wall:.2f} s, {cold_requests} requests ({distinct} distinct), ok={cold.ok}")
    print(f"sequential bare fetch {seq_wall:.2f} s, {seq_requests} requests")
    print(f"ratio                 {cold_wall / seq_wall:.2f} (target <= 1.0)")
    print(f"peak RSS              {peak_mb:.1f} MB (target < 100 MB)")
    print(f"warm cycle            {warm.requests} request(s) (target 1), ok={warm.ok}")


if __name__ == "__main__":
    main()
