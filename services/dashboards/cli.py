"""`newnormal grafana generate | check | push`."""

from __future__ import annotations

import argparse
import os
import sys


def cmd_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from services.dashboards.generate import DASHBOARDS_DIR, write_all, write_prometheus_rule

    for path in write_all(Path(args.out) if args.out else DASHBOARDS_DIR):
        print(path)
    if not args.out:
        print(write_prometheus_rule())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from services.dashboards.generate import stale_files

    stale = stale_files()
    if stale:
        print("out of date (run `newnormal grafana generate`): " + ", ".join(stale), file=sys.stderr)
        return 1
    print("dashboards up to date")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from services.dashboards.push import push

    token = args.token or os.environ.get("GRAFANA_TOKEN")
    report = push(args.url, token, prometheus_url=args.prometheus_url, folder_uid=args.folder)
    print(f"datasource {report.datasource}; folder {report.folder}; dashboards: {', '.join(report.dashboards)}")
    return 0


def _add_commands(sub: argparse._SubParsersAction) -> None:
    generate = sub.add_parser("generate", help="write deploy/grafana/dashboards/*.json (and the Kubernetes PrometheusRule)")
    generate.add_argument("--out", help="directory (default deploy/grafana/dashboards)")
    generate.set_defaults(func=cmd_generate)
    check = sub.add_parser("check", help="fail if the committed dashboards differ from the code")
    check.set_defaults(func=cmd_check)
    push = sub.add_parser("push", help="upload datasource, folder and dashboards into a running Grafana")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. https://grafana.example.go.th")
    push.add_argument("--token", help="service-account token (default: $GRAFANA_TOKEN; never put it in a file)")
    push.add_argument("--folder", default="newnormal", help="folder uid (default newnormal)")
    push.add_argument("--prometheus-url", default=os.environ.get("NEWNORMAL_PROMETHEUS_URL", "http://prometheus:9090"),
                      help="Prometheus URL as Grafana's server reaches it")
    push.set_defaults(func=cmd_push)


def register(subparsers: argparse._SubParsersAction) -> None:
    grafana = subparsers.add_parser("grafana", help="Grafana dashboards: generate, check, push")
    _add_commands(grafana.add_subparsers(dest="grafana_command", required=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.dashboards")
    _add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args) or 0
