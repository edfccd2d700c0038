"""Markdown table of the platform benchmark results (bench/results/*.json) for the README performance section.

Usage: python -m bench.platform_report
"""

from __future__ import annotations

import json

from bench.harness import RESULTS


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def rows() -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    if r := _load("platform_ingest"):
        out.append(("HTTP ingestion, batched (100/request, 4 in flight)", f"{r['project_events_per_s']['median']:,.0f} ev/s",
                    f"raw aiokafka producer {r['baseline_events_per_s']['median']:,.0f} ev/s",
                    f"{r['ratio_project_over_baseline']:.2f}",
                    (f"request p50 {r['http_batch_latency_s']['p50'] * 1000:.0f} ms, "
                     f"p99 {r['http_batch_latency_s']['p99'] * 1000:.0f} ms; "
                     f"feedback RSS {r['peak_rss_mib']['feedback_service']:.0f} MiB")))
    if r := _load("platform_consumer"):
        out.append(("Consumer pattern (validate, DLQ, audit insert, commit)", f"{r['project_events_per_s']['median']:,.0f} ev/s",
                    f"raw getmany + insert_many {r['baseline_events_per_s']['median']:,.0f} ev/s",
                    f"{r['ratio_project_over_baseline']:.2f}", f"{r['size']:,} events × {r['repeats']}, group join included"))
    if r := _load("e2e_latency"):
        p, b = r["project_latency_s"], r["baseline_latency_s"]
        out.append((f"End-to-end at {r['rate_events_per_s']:.0f} ev/s (HTTP 202 → visible in DB)",
                    f"p50 {p['p50']:.2f} s, p99 {p['p99']:.2f} s", f"raw producer → raw consumer p50 {b['p50']:.2f} s, p99 {b['p99']:.2f} s",
                    f"p50 {r['ratio_p50']:.2f}, p99 {r['ratio_p99']:.2f}", f"{p['n']} batches of {r['batch']}"))
    if r := _load("deadline_notification"):
        p, b = r["project_deadline_to_email_s"], r["baseline_raw_kafka_to_smtp_s"]
        out.append(("Deadline passed → e-mail at the SMTP sink", f"p50 {p['p50']:.2f} s, p99 {p['p99']:.2f} s",
                    f"raw Kafka → SMTP p50 {b['p50']:.2f} s, p99 {b['p99']:.2f} s", f"p50 {r['ratio_p50']:.1f}",
                    f"goal p99 < 5 s; Prometheus → Alertmanager path: {r['reference_prometheus_alertmanager_s']} s"))
    if r := _load("scaling"):
        for point in r["curve"]:
            out.append((f"Scaling: {point['replicas']} feedback replica(s), {r['partitions']} partitions",
                        f"{point['project_events_per_s']:,.0f} ev/s (×{point['speedup_vs_one_replica']:.2f})",
                        f"{point['replicas']} raw consumer process(es) {point['baseline_events_per_s']:,.0f} ev/s",
                        f"{point['ratio_project_over_baseline']:.2f}", f"{r['size']:,} events"))
    if r := _load("memory"):
        idle, load = r["idle_rss_mib"], r["peak_rss_under_load_mib"]
        out.append(("Memory (RSS), idle → peak under load", ", ".join(f"{k} {idle[k]:.0f}→{load[k]:.0f} MiB" for k in idle),
                    f"raw consumer process {r['baseline_raw_consumer_peak_rss_mib']:.0f} MiB",
                    f"feedback {r['ratio_feedback_peak_over_baseline']:.2f}", f"{r['size_per_service']:,} events per service"))
    return out


def table() -> str:
    lines = ["| Benchmark | Project | Baseline (same broker and DB, same run) | Ratio project/baseline | Notes |",
             "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
