"""Hostile request bodies against the feedback service's `POST /v1/events` (issue 12, bounded cost per request).

The issue's case: a valid agency key and a 4.8 MB body `[0,0,...,0]` (2.4 M items, batched mode) was answered
after 17 s with about 2 GB of peak RSS growth. Each case here is posted to the service running as a child
process (as in production), and measured as the client sees it (status, reason, wall time) and as the
service's kernel sees it: peak RSS (VmHWM) growth over the RSS before the request, with the peak reset
through /proc/<pid>/clear_refs before every request so one case's peak is not hidden by an earlier one.

Two services: one with the default body limit (the zeros body is refused on Content-Length, unread) and one
with the limit raised to 8 MiB, so the zeros body is read and decoded and the 500-event cap (counted before
any item is parsed) is what answers. Baseline in the same run: what the old path's first step alone, a full
`json.loads` of the body in the bench process, costs in time and traced memory.
Usage: python -m bench.hostile_body [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

from bench.harness import rss_mib, write_results
from bench.platform_stack import SHARED_NOTE, Stack

BATCH = "application/cloudevents-batch+json"
GOAL = {"status": "4xx", "max_seconds": 1.0, "max_peak_rss_growth_mib": 50.0}


def bodies() -> dict[str, tuple[str, bytes]]:
    """name -> (content type, body)."""
    zeros = b"[" + b"0," * 2_400_000 + b"0]"
    return {
        "zeros_4_8_mb": (BATCH, zeros),
        "nested_50000_deep": (BATCH, b"[" * 50_000 + b"]" * 50_000),
        "nested_50000_deep_unclosed": (BATCH, b"[" * 50_000),
        "over_limit_16_mib": (BATCH, b"[" + b" " * (16 * 1024 * 1024) + b"]"),
        # The most wasteful JSON per byte (`{}`: 2 bytes of text, 64 of dict) as one item: refused by the
        # container budget before decoding; without it this costs ~50 MiB.
        "containers_in_one_item_1_mib": (BATCH, b'[{"a":[' + b"{}," * 349_000 + b"{}]}]"),
        "many_small_objects_1_mib": (BATCH, b"[" + b"{}," * 349_000 + b"{}]"),
        # The most wasteful shape the limits let through: short strings in one item, decoded whole
        # (~12 bytes of memory per byte of body), then refused as an event without its attributes.
        "strings_in_one_item_at_limit": (BATCH, b'[{"a":[' + b'"ab",' * 209_000 + b'"ab"]}]'),
        "structured_70_kib": ("application/cloudevents+json", b'{"pad":"' + b"x" * (70 * 1024) + b'"}'),
    }


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post_case(client: httpx.Client, url: str, key: str, pid: int, content_type: str, body: bytes) -> dict[str, Any]:
    peak_reset = reset_peak(pid)
    before = rss_mib(pid)
    t0 = time.perf_counter()
    resp = client.post(f"{url}/v1/events", content=body, headers={"Content-Type": content_type, "X-API-Key": key})
    seconds = time.perf_counter() - t0
    try:
        reason = resp.json().get("reason")
    except ValueError:
        reason = None
    return {"status": resp.status_code, "reason": reason, "seconds": seconds,
            "peak_rss_growth_mib": hwm_mib(pid) - before, "peak_reset": peak_reset}


def baseline_json_loads(body: bytes) -> dict[str, float]:
    """The old path's first step: decode every item before counting them."""
    tracemalloc.start()
    t0 = time.perf_counter()
    value = json.loads(body)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"items": len(value), "seconds": seconds, "traced_peak_mib": peak}


async def main(repeats: int) -> dict[str, Any]:
    cases = bodies()
    results: dict[str, Any] = {}
    with Stack() as stack:
        services = {
            "default_limits": stack.service("feedback", "bench_hostile_default"),
            "body_limit_8_mib": stack.service("feedback", "bench_hostile_8mib",
                                              NEWNORMAL_INGEST_MAX_BODY_BYTES=str(8 * 1024 * 1024)),
        }
        for label, (proc, url) in services.items():
            db = "bench_hostile_default" if label == "default_limits" else "bench_hostile_8mib"
            key = (await stack.keys(db, ["rd"]))["rd"]
            pid = proc.popen.pid
            per_case: dict[str, Any] = {}
            with httpx.Client(timeout=120) as client:
                # Warm-up: the first request of a process pays for imports and caches, not for the body.
                client.post(f"{url}/v1/events", content=b"[]", headers={"Content-Type": BATCH, "X-API-Key": key})
                for name, (ctype, body) in cases.items():
                    runs = [post_case(client, url, key, pid, ctype, body) for _ in range(repeats)]
                    per_case[name] = {
                        "body_bytes": len(body), "status": sorted({r["status"] for r in runs}),
                        "reason": sorted({str(r["reason"]) for r in runs}),
                        "seconds_median": statistics.median(r["seconds"] for r in runs),
                        "seconds_max": max(r["seconds"] for r in runs),
                        "peak_rss_growth_mib_max": max(r["peak_rss_growth_mib"] for r in runs),
                        "peak_reset_supported": all(r["peak_reset"] for r in runs),
                    }
                    print(f"{label:17} {name:28} {per_case[name]['status']} {per_case[name]['reason']} "
                          f"{per_case[name]['seconds_median']:.3f} s, peak RSS +{per_case[name]['peak_rss_growth_mib_max']:.1f} MiB",
                          flush=True)
            per_case["service_rss_mib_after"] = rss_mib(pid)
            results[label] = per_case
    zeros = cases["zeros_4_8_mb"][1]
    issue_case = results["body_limit_8_mib"]["zeros_4_8_mb"]
    return {
        "note": SHARED_NOTE, "repeats": repeats, "goal": GOAL,
        "cases": results,
        "baseline_json_loads_zeros_in_bench_process": baseline_json_loads(zeros),
        "issue_case_meets_goal": (all(400 <= s < 500 for s in issue_case["status"])
                                  and issue_case["seconds_max"] < GOAL["max_seconds"]
                                  and issue_case["peak_rss_growth_mib_max"] < GOAL["max_peak_rss_growth_mib"]),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    result = asyncio.run(main(a.repeats))
    print(json.dumps(result, indent=2))
    print(write_results("hostile_body", result))
