"""`newnormal up`: the whole system on one machine, on embedded servers.

Starts Tansu (Kafka protocol), SecantusDB (MongoDB wire), a mail sink (every notification e-mail
lands in `.data/mail/`, a Maildir), Prometheus and Alertmanager when installed, and the services; waits for each; writes demo API keys and the reports service's
programme-office key; prints the programme overview's URL first; Ctrl-C stops all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from services.common import processes as px
from services.contracts.webhooks import generate_secret

DEFAULT_PORTS = {"kafka": 9092, "mongodb": 27017, "prometheus": 9090, "alertmanager": 9093, "smtp": 8025,
                 "roadmap": 8101, "training": 8102, "feedback": 8103, "notifier": 8104, "reports": 8105}
SERVICE_NAMES = ("roadmap", "training", "feedback", "notifier", "reports")
# Started once the keys exist: it reads the others' APIs with a programme-office key of its own.
LATE_SERVICES = ("reports",)
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="start the whole system locally on embedded servers")
    for name, port in DEFAULT_PORTS.items():
        up.add_argument(f"--{name}-port", type=int, default=int(os.environ.get(f"NEWNORMAL_UP_{name.upper()}_PORT", port)))
    up.add_argument("--data-dir", default=os.environ.get("NEWNORMAL_DATA_DIR", ".data"))
    up.add_argument("--no-demo", action="store_true", help="do not run the agency simulator")
    up.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus and Alertmanager")
    up.add_argument("--exit-when-ready", action="store_true", help="stop again once everything is ready (smoke test)")
    up.set_defaults(func=cmd_up)


def _write_prometheus_config(path: Path, ports: dict[str, int]) -> Path:
    """Local copy of deploy/prometheus/prometheus.yml pointed at the local ports."""
    rules_dir = DEPLOY / "prometheus" / "rules"
    rule_files = sorted(str(p) for p in rules_dir.glob("*.yml")) if rules_dir.exists() else []
    scrape = "\n".join(
        f"  - job_name: {name}\n    static_configs:\n      - targets: ['127.0.0.1:{ports[name]}']" for name in SERVICE_NAMES)
    rules = "".join(f"\n  - {f}" for f in rule_files)
    path.write_text(
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{ports['alertmanager']}']\n"
        f"rule_files:{rules or ' []'}\nscrape_configs:\n{scrape}\n", encoding="utf-8")
    return path


# Where deploy/alertmanager/alertmanager.yml reads the receiver's credential; `up` points it at .data/.
DEPLOY_AM_CREDENTIAL_FILE = "/run/secrets/alertmanager-notifier-token"
LEARNER_SECRET_FILE = "learner-hmac-secret"
AM_CREDENTIAL_FILE = "alertmanager-notifier-token"
WEBHOOK_SECRET_FILE = "notifier-webhook-secret"
ACK_SECRET_FILE = "notifier-ack-secret"


def local_secret(path: Path, generate: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """A secret generated once into `path` (mode 0600) and reused on every later start.

    Reuse matters: learner pseudonyms are HMACs under this key, so a new key would split every learner in two."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        secret = path.read_text(encoding="utf-8").strip()
        if not secret:
            raise RuntimeError(f"{path} is empty: delete it to generate a new secret (see README before doing so)") from None
        return secret
    secret = generate()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret)
    return secret


def _write_alertmanager_config(path: Path, ports: dict[str, int], credential_file: Path) -> Path:
    source = DEPLOY / "alertmanager" / "alertmanager.yml"
    if source.exists():
        text = (source.read_text(encoding="utf-8")
                .replace("http://notifier:8104", f"http://127.0.0.1:{ports['notifier']}")
                .replace(DEPLOY_AM_CREDENTIAL_FILE, str(credential_file)))
    else:
        text = ("route:\n  receiver: notifier\n  group_wait: 10s\nreceivers:\n  - name: notifier\n    webhook_configs:\n"
                f"      - url: http://127.0.0.1:{ports['notifier']}/v1/alertmanager\n"
                f"        http_config:\n          authorization:\n            credentials_file: {credential_file}\n")
    path.write_text(text, encoding="utf-8")
    return path


DEMO_KEY_LABEL = "demo"
REPORTS_KEY_LABEL = "reports"
REPORTS_KEY_FILE = "reports-api-key"
# The notifier fetches the quarterly report's PDF from the reports service (to attach it) with its own key.
NOTIFIER_REPORTS_KEY_LABEL = "notifier-reports"
NOTIFIER_REPORTS_KEY_FILE = "notifier-reports-api-key"


async def _write_reports_key(mongo_uri: str, db_name: str, path: Path, label: str = REPORTS_KEY_LABEL) -> str:
    """A programme-office key labelled `label` into `path` (0600), fresh on each start (the file is the only
    copy; the previous key of that label is revoked). Returns the key."""
    from pymongo import AsyncMongoClient

    from services.common.auth import Role, create_key, revoke_keys
    from services.contracts.agencies import PROGRAMME_OFFICE

    client = AsyncMongoClient(mongo_uri)
    try:
        db = client[db_name]
        await revoke_keys(db, PROGRAMME_OFFICE, label=label)
        key = await create_key(db, PROGRAMME_OFFICE, Role.programme_office, label)
    finally:
        await client.close()
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key)
    return key


async def _write_keys(mongo_uri: str, db_name: str, path: Path, survey_path: Path) -> dict[str, str]:
    """Agency and programme-office keys into `path` (the simulator's), one survey (kiosk) key per agency into
    `survey_path`, both 0600. Returns the survey keys: only those ever go into a printed survey URL."""
    from pymongo import AsyncMongoClient

    from services.common.auth import Role, create_key, revoke_keys
    from services.contracts.agencies import PROGRAMME_OFFICE, get_registry

    client = AsyncMongoClient(mongo_uri)
    try:
        db = client[db_name]
        keys: dict[str, str] = {}
        survey: dict[str, str] = {}
        for agency in get_registry().all():
            # Fresh demo keys each start (the files are the only copy); keys an operator made stay valid.
            await revoke_keys(db, agency.code, label=DEMO_KEY_LABEL)
            keys[agency.code] = await create_key(db, agency.code, Role.agency, DEMO_KEY_LABEL)
            survey[agency.code] = await create_key(db, agency.code, Role.survey, DEMO_KEY_LABEL)
        keys["programme_office"] = await create_key(db, PROGRAMME_OFFICE, Role.programme_office, DEMO_KEY_LABEL)
    finally:
        await client.close()
    for file, content in ((path, keys), (survey_path, survey)):
        file.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        file.chmod(0o600)
    return survey


def cmd_up(args: argparse.Namespace) -> int:
    data = Path(args.data_dir).resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ports = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    mongo_uri = f"mongodb://127.0.0.1:{ports['mongodb']}"
    env = {
        "NEWNORMAL_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['kafka']}",
        "NEWNORMAL_MONGO_URI": mongo_uri,
        "NEWNORMAL_KAFKA_SESSION_TIMEOUT_MS": os.environ.get("NEWNORMAL_KAFKA_SESSION_TIMEOUT_MS", "6000"),
        "NEWNORMAL_KAFKA_HEARTBEAT_INTERVAL_MS": os.environ.get("NEWNORMAL_KAFKA_HEARTBEAT_INTERVAL_MS", "1000"),
        "NEWNORMAL_DASHBOARD_URL": os.environ.get("NEWNORMAL_DASHBOARD_URL", "http://127.0.0.1:3000"),
    }
    for name in SERVICE_NAMES:
        env[f"NEWNORMAL_{name.upper()}_URL"] = f"http://127.0.0.1:{ports[name]}"
    # Notification e-mail goes to the local mail sink unless an SMTP server is configured explicitly.
    maildir = data / "mail"
    env["NEWNORMAL_NOTIFIER_SMTP_HOST"] = os.environ.get("NEWNORMAL_NOTIFIER_SMTP_HOST", "127.0.0.1")
    env["NEWNORMAL_NOTIFIER_SMTP_PORT"] = os.environ.get("NEWNORMAL_NOTIFIER_SMTP_PORT", str(ports["smtp"]))
    use_sink = "NEWNORMAL_NOTIFIER_SMTP_HOST" not in os.environ and "NEWNORMAL_NOTIFIER_SMTP_PORT" not in os.environ
    # Secrets have no defaults in code: generated once into .data/ (0600) and reused on every start. A learner
    # secret already in the environment wins (it is the one existing pseudonyms were made with).
    am_credential = data / AM_CREDENTIAL_FILE  # Alertmanager reads the same file (credentials_file)
    env["NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN"] = local_secret(am_credential)
    env["NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET"] = (os.environ.get("NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET")
                                                     or local_secret(data / LEARNER_SECRET_FILE))
    # Webhooks are signed (Standard Webhooks, whsec_ format) and the default routes name one webhook.
    env["NEWNORMAL_NOTIFIER_WEBHOOK_SECRET"] = (os.environ.get("NEWNORMAL_NOTIFIER_WEBHOOK_SECRET")
                                                 or local_secret(data / WEBHOOK_SECRET_FILE, generate_secret))
    # Acknowledge links are signed with it; the links in the local mailbox point at the local notifier.
    env["NEWNORMAL_NOTIFIER_ACK_SECRET"] = (os.environ.get("NEWNORMAL_NOTIFIER_ACK_SECRET")
                                            or local_secret(data / ACK_SECRET_FILE))
    env["NEWNORMAL_NOTIFIER_PUBLIC_URL"] = f"http://127.0.0.1:{ports['notifier']}"
    started: list[px.ManagedProcess] = []
    stop_requested = False

    def request_stop(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)

    def launch(proc: px.ManagedProcess, ready, timeout: float = 60) -> None:
        print(f"  starting {proc.name} …", flush=True)
        proc.start()
        started.append(proc)
        px.wait_until(ready, timeout, proc.name, proc=proc)

    urls: dict[str, str] = {}
    try:
        print("New Normal programme monitor · ระบบติดตามการปฏิบัติราชการวิถีใหม่", flush=True)
        launch(px.tansu(ports["kafka"], logs), lambda: px.port_open(ports["kafka"]))
        urls["Kafka (Tansu)"] = f"127.0.0.1:{ports['kafka']}"
        launch(px.secantus(ports["mongodb"], str(data / "mongodb"), logs), lambda: px.mongo_ready(mongo_uri))
        urls["MongoDB (SecantusDB)"] = mongo_uri
        # Before the notifier starts: it e-mails the quarterly report with the PDF attached, fetched from the
        # reports service (and only from there) with this key.
        env["NEWNORMAL_NOTIFIER_REPORTS_API_KEY"] = asyncio.run(_write_reports_key(
            mongo_uri, "newnormal", data / NOTIFIER_REPORTS_KEY_FILE, NOTIFIER_REPORTS_KEY_LABEL))
        env["NEWNORMAL_NOTIFIER_REPORTS_URL"] = f"http://127.0.0.1:{ports['reports']}"
        if use_sink:
            launch(px.mailsink(ports["smtp"], maildir, logs), lambda: px.port_open(ports["smtp"]))
            urls["Mailbox (Maildir)"] = f"{maildir}   (every notification e-mail · อีเมลแจ้งเตือนทุกฉบับ)"
        for name in (n for n in SERVICE_NAMES if n not in LATE_SERVICES):
            port = ports[name]
            launch(px.service(name, port, env, logs), lambda p=port: px.http_ok(f"http://127.0.0.1:{p}/readyz"), 120)
            urls[f"{name} service"] = f"http://127.0.0.1:{port}/docs"
        keys_path = data / "api-keys.json"
        survey_keys = asyncio.run(_write_keys(mongo_uri, "newnormal", keys_path, data / "survey-keys.json"))
        reports_key = data / REPORTS_KEY_FILE
        asyncio.run(_write_reports_key(mongo_uri, "newnormal", reports_key))
        port = ports["reports"]
        launch(px.service("reports", port, {**env, "NEWNORMAL_REPORTS_API_KEY_FILE": str(reports_key)}, logs),
               lambda: px.http_ok(f"http://127.0.0.1:{port}/readyz"), 120)
        urls["reports service"] = f"http://127.0.0.1:{port}/docs"
        urls["API keys"] = str(keys_path)
        urls["Survey keys (kiosk)"] = str(data / "survey-keys.json")
        demo_agency = "dga" if "dga" in survey_keys else next(iter(survey_keys))
        # A survey URL is public by nature: it carries a survey key (submit responses only), never an agency key.
        urls["Survey page (kiosk)"] = (f"http://127.0.0.1:{ports['feedback']}/survey/{demo_agency}"
                                       f"?key={survey_keys[demo_agency]}")
        if not args.no_prometheus and px.prometheus_binary() and px.alertmanager_binary():
            am_cfg = _write_alertmanager_config(data / "alertmanager.yml", ports, am_credential)
            launch(px.alertmanager(ports["alertmanager"], am_cfg, data / "alertmanager", logs),
                   lambda: px.http_ok(f"http://127.0.0.1:{ports['alertmanager']}/-/ready"))
            urls["Alertmanager"] = f"http://127.0.0.1:{ports['alertmanager']}"
            prom_cfg = _write_prometheus_config(data / "prometheus.yml", ports)
            launch(px.prometheus(ports["prometheus"], prom_cfg, data / "prometheus", logs),
                   lambda: px.http_ok(f"http://127.0.0.1:{ports['prometheus']}/-/ready"))
            urls["Prometheus"] = f"http://127.0.0.1:{ports['prometheus']}"
        elif not args.no_prometheus:
            print("  (Prometheus/Alertmanager not installed: apt-get install prometheus prometheus-alertmanager)")
        if not args.no_demo:
            try:
                from services.simulator import localrun
            except ModuleNotFoundError:
                print("  (demo simulator not available yet)")
            else:
                proc = localrun.simulator_process(env, ports, keys_path, logs)
                proc.start()
                started.append(proc)
                urls["Demo simulator log"] = str(proc.log_path)
        print("\nReady · พร้อมใช้งาน", flush=True)
        # The page people read comes first; the rest is for operators.
        print(f"  {'Programme overview':<22} http://127.0.0.1:{ports['reports']}/   (ภาพรวมแผนงาน)")
        for label, url in urls.items():
            print(f"  {label:<22} {url}")
        print(f"  {'Logs':<22} {logs}")
        if args.exit_when_ready:
            return 0
        print("\nPress Ctrl-C to stop · กด Ctrl-C เพื่อหยุด", flush=True)
        while not stop_requested:
            for proc in started:
                if not proc.running and proc.name != "simulator":
                    print(f"{proc.name} exited; see {proc.log_path}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    except (TimeoutError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("\nstopping …", flush=True)
        for proc in reversed(started):
            proc.stop()
