"""`newnormal simulate`: realistic agency systems feeding the services (demo data, load)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

DEFAULT_URLS = {"roadmap": "http://127.0.0.1:8101", "training": "http://127.0.0.1:8102", "feedback": "http://127.0.0.1:8103"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate agency systems sending events (HTTP and Kafka)",
                       description="Agencies of the registry send a programme plan, progress, training targets and "
                                   "completions, and citizen feedback, through the public HTTP APIs and straight to "
                                   "Kafka. The same --seed and --start give the same events.")
    p.add_argument("--seed", type=int, default=int(os.environ.get("NEWNORMAL_SIM_SEED", "2569")))
    p.add_argument("--agencies", type=int, default=12, help="number of registry agencies taking part (default 12)")
    p.add_argument("--rate", type=float, default=50.0, help="events per second (default 50)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, default=None, help="seconds to run (default 60)")
    stop.add_argument("--until-stopped", action="store_true", help="run until Ctrl-C / SIGTERM")
    p.add_argument("--speedup", type=float, default=1.0,
                   help="simulated seconds per real second; with --duration the simulated window ends now")
    p.add_argument("--start", default=None, help="the simulated 'now' (RFC 3339; default: the current time)")
    p.add_argument("--kafka-share", type=float, default=0.2, help="share of live events sent straight to Kafka (0-1)")
    p.add_argument("--keys", default=os.environ.get("NEWNORMAL_SIM_KEYS_FILE", ".data/api-keys.json"),
                   help="JSON file {agency_code: key, 'programme_office': key} (written by `newnormal up`)")
    p.add_argument("--training-history", type=int, default=3000,
                   help="at most this many past training completions sent at start")
    p.add_argument("--no-initial", action="store_true", help="skip the plan, targets and history; live events only")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from services.common.logging import configure_logging

    configure_logging("simulator", os.environ.get("NEWNORMAL_LOG_LEVEL", "WARNING"))
    if not 0 <= args.kafka_share <= 1 or args.rate <= 0 or args.speedup <= 0:
        print("error: --kafka-share must be in [0, 1]; --rate and --speedup must be positive", file=sys.stderr)
        return 2
    try:
        keys = json.loads(Path(args.keys).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read API keys from {args.keys}: {exc}", file=sys.stderr)
        return 2
    duration = None if args.until_stopped else (args.duration if args.duration is not None else 60.0)
    return asyncio.run(simulate(args, keys, duration))


async def simulate(args: argparse.Namespace, keys: dict[str, str], duration: float | None) -> int:
    from services.common.clock import utc_now
    from services.common.settings import ServiceSettings
    from services.simulator.model import World
    from services.simulator.sender import Pacer, Progress, Sender, Stats

    start = datetime.fromisoformat(args.start) if args.start else utc_now()
    world = World(args.seed, start, agencies=args.agencies)
    missing = [a for a in world.agencies if a not in keys]
    if "programme_office" not in keys or missing:
        print(f"error: the keys file lacks keys for: {', '.join(missing + (['programme_office'] if 'programme_office' not in keys else []))}",
              file=sys.stderr)
        return 2
    urls = {name: os.environ.get(f"NEWNORMAL_{name.upper()}_URL", url) for name, url in DEFAULT_URLS.items()}
    kafka = ServiceSettings(service_name="simulator") if args.kafka_share > 0 else None
    stats = Stats()
    progress = Progress(stats)
    sender = Sender(urls=urls, keys=keys, kafka_settings=kafka, kafka_share=args.kafka_share, seed=args.seed, stats=stats)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    deadline = time.monotonic() + duration if duration is not None else None
    pacer = Pacer(args.rate)
    in_flight: set[asyncio.Task] = set()
    window = asyncio.Semaphore(4)  # a few requests in flight keep the rate up without reordering much

    async def dispatch(chunk: list[dict], plan_key: bool = False) -> None:
        await pacer.admit(len(chunk))
        await window.acquire()
        task = asyncio.ensure_future(sender.send(chunk, plan_key=plan_key))
        in_flight.add(task)
        task.add_done_callback(lambda t: (in_flight.discard(t), window.release()))
        progress.tick()

    def over() -> bool:
        return stopping.is_set() or (deadline is not None and time.monotonic() >= deadline)

    print(f"simulating {len(world.agencies)} agencies, FY {world.fiscal_year}, {len(world.milestones)} milestones, "
          f"seed {args.seed}, {args.rate:g} ev/s", file=sys.stderr, flush=True)
    try:
        await sender.start()
        if not args.no_initial:
            # The plan first, with the programme office's key, so progress reports find their milestones.
            await _in_chunks(world.plan_events(), dispatch, over, plan_key=True)
            await asyncio.gather(*in_flight)
            await _in_chunks([*world.target_events(), *world.roadmap_history(),
                              *world.training_history(args.training_history)], dispatch, over)
        # With --duration and --speedup the simulated window ends now: no event is stamped in the future.
        origin = start - timedelta(seconds=duration * args.speedup) if duration and args.speedup > 1 else start
        chunk_size = max(1, min(100, int(args.rate / 10)))
        stream = world.stream(args.speedup / args.rate, origin)
        while not over():
            await dispatch([next(stream)[1] for _ in range(chunk_size)])
        if in_flight:
            await asyncio.gather(*in_flight)
    finally:
        progress.close()
        await sender.stop()
    return 1 if stats.errors else 0


async def _in_chunks(events: list[dict], dispatch, over, plan_key: bool = False, size: int = 100) -> None:
    for i in range(0, len(events), size):
        if over():
            return
        await dispatch(events[i:i + size], plan_key)
