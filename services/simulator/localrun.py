"""How `newnormal up` runs the demo simulator next to the local stack."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from services.common.processes import ManagedProcess

DEMO_RATE = os.environ.get("NEWNORMAL_SIM_RATE", "20")


def simulator_process(env: dict[str, str], ports: dict[str, int], keys_path: Path, logs: Path) -> ManagedProcess:
    """`newnormal simulate --until-stopped` against the local services (HTTP) and broker (Kafka)."""
    child_env = dict(env)
    for name in ("roadmap", "training", "feedback"):
        child_env.setdefault(f"NEWNORMAL_{name.upper()}_URL", f"http://127.0.0.1:{ports[name]}")
    child_env.setdefault("NEWNORMAL_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{ports['kafka']}")
    child_env["NEWNORMAL_SIM_KEYS_FILE"] = str(keys_path)
    return ManagedProcess("simulator", [sys.executable, "-m", "services.cli", "simulate", "--until-stopped",
                                        "--rate", DEMO_RATE, "--keys", str(keys_path)],
                          logs / "simulator.log", env=child_env)
