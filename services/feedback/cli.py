"""`newnormal feedback recount | verify`: rebuild or check the rollups from the stored responses."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta


def _repo_run(action):
    from services.common.mongo import run_on_database
    from services.feedback.adapters import FeedbackRepository
    from services.feedback.settings import FeedbackSettings

    return run_on_database(FeedbackSettings(), lambda db: action(FeedbackRepository(db)))


def cmd_recount(args: argparse.Namespace) -> int:
    from services.common.mongo import Progress
    from services.feedback.settings import FeedbackSettings

    grace = timedelta(seconds=FeedbackSettings().feedback_sweep_grace_seconds)
    progress = Progress("responses")
    result = _repo_run(lambda repo: repo.recount(grace, progress))
    progress.done()
    print(json.dumps(result))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from services.common.mongo import report_differences

    return report_differences(_repo_run(lambda repo: repo.rollup_differences()))


def register(subparsers) -> None:
    feedback = subparsers.add_parser("feedback", help="feedback service operations")
    sub = feedback.add_subparsers(dest="feedback_command", required=True)
    recount = sub.add_parser("recount", help="rebuild the rollups from the stored responses, while the service runs (its writes wait meanwhile)")
    recount.set_defaults(func=cmd_recount)
    verify = sub.add_parser("verify", help="compare the rollups with a full recount (exit 1 on a difference)")
    verify.set_defaults(func=cmd_verify)
