"""`newnormal`: one command for running, operating and demonstrating the system.

Each service may add its own sub-commands through a `cli.register(subparsers)` function.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

SERVICES = ("roadmap", "training", "feedback", "notifier", "reports")


def _settings_for(name: str):
    module = importlib.import_module(f"services.{name}.settings")
    return getattr(module, f"{name.capitalize()}Settings")()


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from services.common.logging import configure_logging
    from services.common.settings import SecretMissing

    settings = _settings_for(args.service)
    try:
        app = importlib.import_module(f"services.{args.service}.main").create_app(settings)
    except SecretMissing as exc:  # a clear refusal, not a traceback
        print(f"{args.service}: refusing to start: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level)  # after imports: libraries add handlers at import
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
    return 0


def _with_key_store(work):
    """Run `work(db)` against the configured MongoDB (NEWNORMAL_MONGO_URI, NEWNORMAL_MONGO_DB)."""
    from services.common.mongo import run_on_database
    from services.common.settings import ServiceSettings

    return run_on_database(ServiceSettings(), work)


def cmd_keys_create(args: argparse.Namespace) -> int:
    from services.common.auth import Role, create_key, parse_duration

    try:
        expires_in = parse_duration(args.expires_in) if args.expires_in else None
        key = _with_key_store(lambda db: create_key(db, args.agency, Role(args.role), args.label, expires_in))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The key is printed once, to stdout only, for the operator to hand over; it is stored hashed.
    print(json.dumps({"agency": args.agency, "role": args.role, "key": key}) if args.json else key)
    return 0


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def cmd_keys_list(args: argparse.Namespace) -> int:
    """Key ids and metadata only: the keys themselves are not stored and cannot be shown."""
    from datetime import UTC

    from services.common.auth import list_keys
    from services.common.clock import utc_now

    keys = _with_key_store(lambda db: list_keys(db, args.agency))
    now = utc_now()
    for k in keys:
        expired = k["expires_at"] is not None and k["expires_at"].replace(tzinfo=k["expires_at"].tzinfo or UTC) <= now
        k["state"] = "revoked" if k["revoked"] else ("expired" if expired else "active")
    if not args.all:
        keys = [k for k in keys if k["state"] == "active"]
    if args.json:
        print(json.dumps(keys, default=lambda v: v.isoformat(), ensure_ascii=False))
        return 0
    rows = [("KEY ID", "AGENCY", "ROLE", "LABEL", "CREATED (UTC)", "EXPIRES (UTC)", "LAST USED (UTC)", "STATE")]
    rows += [(k["key_id"], k["agency"], k["role"], (k["label"] or "-")[:30], _when(k["created_at"]),
              _when(k["expires_at"]), _when(k["last_used_at"]), k["state"]) for k in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Every service refuses a revoked key within `api_key_cache_seconds` (at most 10 s)."""
    from services.common.auth import revoke_key, revoke_keys

    if bool(args.key_id) == bool(args.agency):
        print("error: give either KEY_ID or --agency", file=sys.stderr)
        return 2
    try:
        if args.agency:
            count = _with_key_store(lambda db: revoke_keys(db, args.agency))
            print(f"revoked {count} key(s) of agency {args.agency}")
            return 0
        done = _with_key_store(lambda db: revoke_key(db, args.key_id))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    state = "was already revoked" if done["already_revoked"] else "revoked"
    print(f"key {done['key_id']} ({done['agency']}, {done['role']}) {state}")
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
    from services.mailsink import register as register_mailsink

    register_up(sub)
    register_mailsink(sub)

    keys = sub.add_parser("keys", help="API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once, stored hashed)")
    create.add_argument("--agency", required=True)
    create.add_argument("--role", choices=("agency", "programme_office", "survey"), default="agency",
                        help="survey: a kiosk key that may only submit /v1/responses for its agency")
    create.add_argument("--label", help="free text shown by `keys list` (who holds the key)")
    create.add_argument("--expires-in", help="lifetime such as 90d, 12h, 30m, 2w (default: no expiry)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="key ids, agency, role, label, created, expires, last used")
    listing.add_argument("--agency")
    listing.add_argument("--all", action="store_true", help="include revoked and expired keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke one key by id, or every key of an agency")
    revoke.add_argument("key_id", nargs="?", metavar="KEY_ID", help="the 12-character id from `keys list`")
    revoke.add_argument("--agency", help="revoke every live key of this agency instead")
    revoke.set_defaults(func=cmd_keys_revoke)

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
