"""`newnormal`: one command for running, operating and demonstrating the system.

Each service may add its own sub-commands through a `cli.register(subparsers)` function.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys

SERVICES = ("roadmap", "training", "feedback", "notifier")


def _settings_for(name: str):
    module = importlib.import_module(f"services.{name}.settings")
    return getattr(module, f"{name.capitalize()}Settings")()


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from services.common.logging import configure_logging

    settings = _settings_for(args.service)
    app = importlib.import_module(f"services.{args.service}.main").create_app(settings)
    configure_logging(settings.service_name, settings.log_level)  # after imports: libraries add handlers at import
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from services.common.auth import Role, create_key
    from services.common.mongo import make_client
    from services.common.settings import ServiceSettings

    async def run() -> str:
        settings = ServiceSettings()
        client = make_client(settings)
        try:
            return await create_key(client[settings.mongo_db], args.agency, Role(args.role), args.label)
        finally:
            await client.close()

    key = asyncio.run(run())
    # The key is printed once, to stdout only, for the operator to hand over; it is stored hashed.
    print(json.dumps({"agency": args.agency, "role": args.role, "key": key}) if args.json else key)
    return 0


def cmd_export_schemas(args: argparse.Namespace) -> int:
    from services.contracts.jsonschema import export

    for path in export(args.out):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newnormal", description="New Normal programme monitor")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one service")
    run.add_argument("service", choices=SERVICES)
    run.set_defaults(func=cmd_run)

    from services.localstack import register as register_up

    register_up(sub)

    keys = sub.add_parser("keys", help="agency API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once, stored hashed)")
    create.add_argument("--agency", required=True)
    create.add_argument("--role", choices=("agency", "programme_office"), default="agency")
    create.add_argument("--label")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_keys_create)

    contracts = sub.add_parser("contracts", help="event contracts")
    contracts_sub = contracts.add_subparsers(dest="contracts_command", required=True)
    schemas = contracts_sub.add_parser("export-schemas", help="write JSON Schema files for every event type")
    schemas.add_argument("--out", default=None)
    schemas.set_defaults(func=cmd_export_schemas)

    for name in (*SERVICES, "simulator", "dashboards"):
        try:
            module = importlib.import_module(f"services.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name != f"services.{name}.cli" and exc.name != f"services.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
