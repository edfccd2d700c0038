"""`newnormal notifier ...`: check a routing file, list failed notifications."""

from __future__ import annotations

import argparse
import json


def cmd_check_routes(args: argparse.Namespace) -> int:
    """Explain a routes file (who is told when), or refuse it with the line at fault."""
    import yaml

    from services.notifier.domain import RoutingError
    from services.notifier.main import load_routing
    from services.notifier.routes_explain import explain, line_of
    from services.notifier.settings import NotifierSettings

    settings = NotifierSettings()
    path = args.file or settings.notifier_routes_file
    try:
        table = load_routing(path, settings)
    except OSError as exc:
        print(f"{path}: {exc.strerror or exc}")
        return 1
    except (RoutingError, yaml.YAMLError) as exc:
        print(f"{path}:{line_of(path, exc)}: {exc}")
        return 1
    print(explain(table))
    return 0


def cmd_failed(args: argparse.Namespace) -> int:
    from services.common.mongo import run_on_database
    from services.notifier.adapters import NotificationRepository
    from services.notifier.handlers import public_view
    from services.notifier.settings import NotifierSettings

    async def failed(db) -> list[dict]:
        found = await NotificationRepository(db).list(state="failed", channel=args.channel, milestone=None,
                                                      limit=args.limit)
        return [public_view(d) for d in found]

    for item in run_on_database(NotifierSettings(), failed):
        print(json.dumps(item, ensure_ascii=False))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("notifier", help="notifier operations")
    sub = parser.add_subparsers(dest="notifier_command", required=True)
    check = sub.add_parser("check-routes", help="validate a routing YAML file (same as `routes check`)")
    check.add_argument("file", nargs="?")
    check.set_defaults(func=cmd_check_routes)
    routes = sub.add_parser("routes", help="the routing file")
    routes_sub = routes.add_subparsers(dest="routes_command", required=True)
    explain = routes_sub.add_parser("check", help="explain a routes file (who is told when) or show the line at fault")
    explain.add_argument("file", nargs="?")
    explain.set_defaults(func=cmd_check_routes)
    failed = sub.add_parser("failed", help="list notifications that failed after their retry budget")
    failed.add_argument("--channel", choices=("email", "webhook", "slack", "teams", "line"))
    failed.add_argument("--limit", type=int, default=100)
    failed.set_defaults(func=cmd_failed)
