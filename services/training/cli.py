"""`newnormal training import FILE`, `newnormal training recount` and `newnormal training verify`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path


def cmd_import(args: argparse.Namespace) -> int:
    from services.common.logging import configure_logging
    from services.training.domain import RowError
    from services.training.importer import run_import
    from services.training.settings import TrainingSettings

    settings = TrainingSettings()
    configure_logging(settings.service_name, "WARNING")
    try:
        summary = asyncio.run(run_import(Path(args.file), settings, url=args.url, key=args.key,
                                         progress=not args.no_progress))
    except RowError as err:
        print(f"ไม่สามารถนำเข้าได้ · cannot import: {err.reason}: {err.detail}", file=sys.stderr)
        return 2
    result = summary.as_dict()
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for e in result["errors"]:
            print(f"บรรทัด/line {e['line']}: {e['reason']}: {e['detail']}", file=sys.stderr)
        print(f"อ่าน/read {result['rows_read']} · รับ/accepted {result['accepted']} · ปฏิเสธ/rejected {result['rejected']}")
        for reason, n in result["rejected_by_reason"].items():
            print(f"  {reason}: {n}")
    return 0 if result["accepted"] or not result["rows_read"] else 1


def _repo_run(action):
    from services.common.clock import utc_now
    from services.common.mongo import run_on_database
    from services.training.adapters import TrainingRepository
    from services.training.settings import TrainingSettings

    settings = TrainingSettings()
    return run_on_database(settings, lambda db: action(TrainingRepository(db, utc_now, settings.stale_claim_seconds)))


def cmd_recount(args: argparse.Namespace) -> int:
    from services.common.mongo import Progress

    progress = Progress("completions and retractions")

    async def recount(repo) -> dict:
        return await repo.recount(write=not args.dry_run, progress=progress)

    figures = _repo_run(recount)
    progress.done()
    print(json.dumps({"rollups": len(figures), "written": not args.dry_run,
                      "ready_learners": sum(f["ready_learners"] for f in figures.values()),
                      "completions": sum(f["completions"] for f in figures.values())}, ensure_ascii=False))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from services.common.mongo import report_differences

    return report_differences(_repo_run(lambda repo: repo.differences()))


def register(subparsers) -> None:
    training = subparsers.add_parser("training", help="training readiness service")
    sub = training.add_subparsers(dest="training_command", required=True)
    imp = sub.add_parser("import", help="import historical completions from CSV (Buddhist-era dates, Thai digits)")
    imp.add_argument("file")
    imp.add_argument("--url", help="send through a running service's POST /v1/events instead of Kafka")
    imp.add_argument("--key", help="agency API key (with --url)")
    imp.add_argument("--kafka", action="store_true", help="publish directly to Kafka (the default)")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    imp.add_argument("--no-progress", action="store_true")
    imp.set_defaults(func=cmd_import)
    rec = sub.add_parser("recount", help="recompute the readiness rollups from the stored completions, while the "
                                         "service runs (its writes wait meanwhile)")
    rec.add_argument("--dry-run", action="store_true", help="compute and print, do not write")
    rec.set_defaults(func=cmd_recount)
    verify = sub.add_parser("verify", help="compare the counts with a full recount (exit 1 on a difference)")
    verify.set_defaults(func=cmd_verify)
