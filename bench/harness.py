"""Shared benchmark plumbing: repeated runs, medians and percentiles, peak RSS, results files.

Every benchmark runs the project's path and a raw-driver baseline on the same servers in one
run and reports the ratio project / baseline: absolute numbers on SecantusDB and Tansu say
little, ratios on the same machine do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
            "min": min(values), "max": max(values), "n": len(values)}


def peak_rss_mib(pid: int | None = None) -> float:
    """Peak resident memory of a process (VmHWM), or of this process when pid is None."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used so far: this one when pid is None."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


class CpuSplit:
    """Wall time and the CPU time of this process and of a server process over a block: which one bounds it.
    `busy` is each one's CPU as a share of the wall time (1.0: that process kept one core busy throughout)."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid

    def __enter__(self) -> CpuSplit:
        self.start = (time.perf_counter(), cpu_seconds(), cpu_seconds(self.server_pid) if self.server_pid else 0.0)
        return self

    def __exit__(self, *exc: object) -> None:
        end = (time.perf_counter(), cpu_seconds(), cpu_seconds(self.server_pid) if self.server_pid else 0.0)
        self.wall, self.own, self.server = (b - a for a, b in zip(self.start, end))

    def report(self) -> dict[str, float]:
        wall = max(self.wall, 1e-9)
        return {"wall_seconds": round(self.wall, 2), "python_cpu_seconds": round(self.own, 2),
                "database_cpu_seconds": round(self.server, 2), "python_busy": round(self.own / wall, 2),
                "database_busy": round(self.server / wall, 2)}


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
               **results}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def running(app):
    """Run an app's lifespan (consumers, background tasks) with an in-process HTTP client."""
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=120) as c):
        yield c


async def until_stored(app, topic: str, expected: int, done: Callable[[], Awaitable[bool]]) -> None:
    """Wait until a running service's consumer has stored `expected` records of `topic` (its own counter, read in
    this process, is counted once a batch's writes are finished), then until `done()` says what the benchmark waits
    for. Polling a count or an aggregate in the database instead competes with the run for it (an aggregate of the
    feedback rollups every half second: about a hundred in a run of 50,000 responses), which no raw baseline does:
    they count what they inserted in memory."""
    registry, labels = app.state.runtime.registry, {"topic": topic, "outcome": "stored"}
    while (registry.get_sample_value("newnormal_consumer_records_total", labels) or 0) < expected:
        await asyncio.sleep(0.05)
    while not await done():
        await asyncio.sleep(0.5)


async def timed_get(client: httpx.AsyncClient, url: str, n: int) -> dict:
    """Milliseconds per GET over n requests, summarised."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.get(url)
        r.raise_for_status()
        times.append((time.perf_counter() - t) * 1000)
    return summary(times)


async def timed_aggregate(collection, pipeline: list[dict], n: int = 3) -> tuple[dict, list[dict]]:
    """Milliseconds per run of an aggregation pipeline over n runs, summarised, and the rows it returned."""
    times, rows = [], []
    for _ in range(n):
        with Timer() as t:
            rows = await (await collection.aggregate(pipeline)).to_list()
        times.append(t.seconds * 1000)
    return summary(times), rows


_PLATFORM_FIGURE = re.compile(r'^(newnormal_consumer_records_total|newnormal_dead_letter_records_total|'
                              r'newnormal_consumer_lag_records)\{([^}]*)\} ([0-9.e+]+)$')


def platform_counters(metrics_text: str, topic: str) -> dict[tuple[str, str], float]:
    """A consumer's platform figures for `topic` in a `/metrics` text: (metric, outcome or reason) -> value."""
    out: dict[tuple[str, str], float] = {}
    for line in metrics_text.splitlines():
        m = _PLATFORM_FIGURE.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if labels.get("topic") != topic:
                continue
            key = (m.group(1), labels.get("outcome") or labels.get("reason", ""))
            out[key] = out.get(key, 0) + float(m.group(3))
    return out
