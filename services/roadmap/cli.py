"""`newnormal roadmap import FILE`: load a programme plan (YAML or CSV) as `roadmap.milestone.planned` events.
`newnormal roadmap rebuild`: every milestone recomputed from the audit trail while the service runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from services.roadmap.importer import DEFAULT_SOURCE_SUFFIX, ParsedPlan, RowError, parse_file

DEFAULT_URL = "http://127.0.0.1:8101"


def register(subparsers: Any) -> None:
    roadmap = subparsers.add_parser("roadmap", help="roadmap service tools")
    sub = roadmap.add_subparsers(dest="roadmap_command", required=True)
    imp = sub.add_parser("import", help="import a programme plan (YAML or CSV; BE dates and Thai digits accepted)")
    imp.add_argument("file")
    imp.add_argument("--source-prefix", default=DEFAULT_SOURCE_SUFFIX,
                     help="last part of the event source /agencies/<agency>/<this> (default %(default)s)")
    imp.add_argument("--url", default=os.environ.get("NEWNORMAL_ROADMAP_URL", DEFAULT_URL),
                     help="roadmap service base URL (env NEWNORMAL_ROADMAP_URL)")
    imp.add_argument("--key", default=None, help="API key (env NEWNORMAL_API_KEY); the programme office key may plan for every agency")
    imp.add_argument("--kafka", action="store_true", help="publish straight to Kafka with the NEWNORMAL_ settings instead of HTTP")
    imp.add_argument("--dry-run", action="store_true", help="check the file only")
    imp.add_argument("--json", action="store_true", help="machine-readable report")
    imp.set_defaults(func=cmd_import)
    rebuild = sub.add_parser("rebuild", help="recompute every milestone from the audit trail, while the service runs "
                                             "(its milestone writes wait meanwhile)")
    rebuild.set_defaults(func=cmd_rebuild)


def cmd_rebuild(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from services.common.mongo import Progress, run_on_database
    from services.roadmap.adapters import MilestoneRepository
    from services.roadmap.handlers import RoadmapService
    from services.roadmap.metrics import RoadmapMetrics
    from services.roadmap.settings import RoadmapSettings

    settings, progress = RoadmapSettings(), Progress("roadmap events")

    async def rebuild(db) -> dict:
        # No publisher: the alerts the rebuilt states call for are raised by the running service's rescan.
        service = RoadmapService(MilestoneRepository(db), None, RoadmapMetrics(CollectorRegistry()), settings)  # type: ignore[arg-type]
        return await service.rebuild(progress=progress, cascade=False)

    result = run_on_database(settings, rebuild)
    progress.done()
    print(json.dumps(result))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    plan = parse_file(args.file, source_suffix=args.source_prefix)
    errors = list(plan.errors)
    sent = 0
    if not args.dry_run and plan.events:
        if args.kafka:
            sent, publish_errors = asyncio.run(_publish_kafka(plan))
        else:
            key = args.key or os.environ.get("NEWNORMAL_API_KEY")
            if not key:
                print("an API key is needed: --key or NEWNORMAL_API_KEY", file=sys.stderr)
                return 2
            sent, publish_errors = _post_http(plan, args.url.rstrip("/"), key)
        errors.extend(publish_errors)
    errors.sort(key=lambda e: e.line)
    report = {"file": args.file, "rows_valid": len(plan.events), "published": sent, "errors": [e.as_dict() for e in errors]}
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        for e in errors:
            print(f"{args.file}:{e.line}: {e.milestone_id or '-'}: {e.reason}: {e.detail}", file=sys.stderr)
        verb = "checked" if args.dry_run else "published"
        print(f"{len(plan.events)} milestone(s) valid, {sent if not args.dry_run else len(plan.events)} {verb}, "
              f"{len(errors)} error(s) / นำเข้า {sent} รายการ ผิดพลาด {len(errors)} รายการ")
    return 1 if errors else 0


def _post_http(plan: ParsedPlan, url: str, key: str) -> tuple[int, list[RowError]]:
    from services.common.intake_client import HttpIntake

    async def send() -> list:
        intake = HttpIntake(url, key, timeout=30)
        try:
            return await intake.send([e for _, e in plan.events])
        finally:
            await intake.close()

    return _report(plan, asyncio.run(send()))


async def _publish_kafka(plan: ParsedPlan) -> tuple[int, list[RowError]]:
    from services.common.intake_client import KafkaIntake
    from services.roadmap.settings import RoadmapSettings

    intake = await KafkaIntake.start(RoadmapSettings())
    try:
        return _report(plan, await intake.send([e for _, e in plan.events]))
    finally:
        await intake.close()


def _report(plan: ParsedPlan, outcomes: list) -> tuple[int, list[RowError]]:
    errors = [RowError(line, e.data.milestone_id, o.reason, o.detail)
              for (line, e), o in zip(plan.events, outcomes) if not o.accepted]
    return len(plan.events) - len(errors), errors
