"""`newnormal roadmap import FILE`: load a programme plan (YAML or CSV) as `roadmap.milestone.planned` events."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from services.roadmap.importer import DEFAULT_SOURCE_SUFFIX, ParsedPlan, RowError, parse_file

CHUNK = 500
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
    import httpx

    errors: list[RowError] = []
    sent = 0
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(plan.events), CHUNK):
            chunk = plan.events[start:start + CHUNK]
            body = json.dumps([e.to_json_dict() for _, e in chunk], ensure_ascii=False)
            try:
                resp = client.post(f"{url}/v1/events", content=body.encode(),
                                   headers={"Content-Type": "application/cloudevents-batch+json", "X-API-Key": key})
            except httpx.HTTPError as exc:
                errors.extend(RowError(line, e.data.milestone_id, "unreachable", str(exc)[:200]) for line, e in chunk)
                continue
            payload = resp.json() if resp.headers.get("content-type", "").endswith("json") else {}
            accepted = {a["index"] for a in payload.get("accepted", [])}
            rejected = {r["index"]: r for r in payload.get("rejected", payload.get("errors", []))}
            for index, (line, event) in enumerate(chunk):
                if index in accepted:
                    sent += 1
                elif index in rejected:
                    errors.append(RowError(line, event.data.milestone_id, rejected[index].get("reason", "rejected"),
                                           rejected[index].get("detail", "")))
                else:
                    errors.append(RowError(line, event.data.milestone_id, payload.get("reason", f"http_{resp.status_code}"),
                                           payload.get("detail", resp.text[:200])))
    return sent, errors


async def _publish_kafka(plan: ParsedPlan) -> tuple[int, list[RowError]]:
    from services.common.kafka import EventPublisher
    from services.roadmap.settings import RoadmapSettings

    publisher = EventPublisher(RoadmapSettings())
    await publisher.start()
    try:
        results = await publisher.publish_many([e for _, e in plan.events])
    finally:
        await publisher.stop()
    errors = [RowError(line, e.data.milestone_id, "publish_failed", str(err)) for (line, e), err in zip(plan.events, results) if err]
    return len(plan.events) - len(errors), errors
