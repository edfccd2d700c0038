"""`newnormal feedback recount | verify`: rebuild or check the rollups from the stored responses."""

from __future__ import annotations

import argparse
import asyncio
import json


def _repo_run(action):
    from services.common.mongo import make_client
    from services.feedback.adapters import FeedbackRepository
    from services.feedback.settings import FeedbackSettings

    async def run():
        settings = FeedbackSettings()
        client = make_client(settings)
        try:
            return await action(FeedbackRepository(client[settings.mongo_db]))
        finally:
            await client.close()

    return asyncio.run(run())


def cmd_recount(args: argparse.Namespace) -> int:
    result = _repo_run(lambda repo: repo.recount())
    print(json.dumps(result))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    diffs = _repo_run(lambda repo: repo.rollup_differences())
    for line in diffs[:50]:
        print(line)
    print(json.dumps({"differences": len(diffs)}))
    return 1 if diffs else 0


def register(subparsers) -> None:
    feedback = subparsers.add_parser("feedback", help="feedback service operations")
    sub = feedback.add_subparsers(dest="feedback_command", required=True)
    recount = sub.add_parser("recount", help="rebuild the rollups from the stored responses (stop the consumers first)")
    recount.set_defaults(func=cmd_recount)
    verify = sub.add_parser("verify", help="compare the rollups with a full recount (exit 1 on a difference)")
    verify.set_defaults(func=cmd_verify)
