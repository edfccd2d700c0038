"""`make faults-full` (on demand, never in CI): the fault run at full size. Feedback, training and the roadmap consume
at once from one Tansu and one SecantusDB while their clients send, over HTTP and Kafka, until 100,000 events are
accepted; meanwhile 10 SIGKILLs spread over the three consumers, a 20 s database outage and a broker freeze
(`fault_scenario.py`). Then, per service: nothing lost, nothing stored twice, every poison record dead-lettered with
its reason, rollups equal to a recount (`verify`), the roadmap's facts each once; the consumer metrics of the final
processes agree with the database. Figures: bench/results/faults_full.json. Exit status 1, with what did not hold,
if anything did not.

    python tests/faults/full.py [--events 100000] [--kills 10] [--services feedback,training,roadmap]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

from fault_scenario import Plan, Scenario, violations  # noqa: E402

from bench.harness import write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events accepted, over all services, before the "
                                                                     "clients stop")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs, round robin over the services")
    parser.add_argument("--services", default="feedback,training,roadmap")
    parser.add_argument("--kafka-rate", type=float, default=70.0, help="events/s of each service's Kafka client")
    parser.add_argument("--http-rate", type=float, default=50.0, help="events/s of each service's HTTP client")
    args = parser.parse_args(argv)
    plan = Plan(services=tuple(args.services.split(",")), kills=args.kills, events=args.events,
                kafka_rate=args.kafka_rate, http_rate=args.http_rate,
                settle_seconds=max(120.0, args.events / 100), grace_seconds=20.0)  # the backlog drains at >= 100 events/s
    with tempfile.TemporaryDirectory(prefix="faults-full-") as tmp:
        scenario = Scenario(Path(tmp), plan)
        try:
            results = asyncio.run(scenario.run())
        finally:
            scenario.stop_all()
    failed = violations(results)
    path = write_results("faults_full", {"note": "timings depend on the machine's load at the time; the counts do not",
                                         "command": "make faults-full", "violations": failed, **results})
    print(f"{results['events_accepted']} events accepted, {len(failed)} violations; figures in {path}")
    for line in failed:
        print(f"  - {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
