"""The real mongrel2 (via its container entrypoint) and real handler processes, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
HUBS = ["gevent", "eventlet"]


class Mongrel2:
    IDLE_TIMEOUT = 3  # seconds; mongrel2's reaper closes connections idle longer (+ 2 ticks of 1 s)

    def __init__(self, tmp: Path):
        self.port, self.requests_port, self.responses_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests_endpoint = f"tcp://127.0.0.1:{self.requests_port}"
        self.responses_endpoint = f"tcp://127.0.0.1:{self.responses_port}"
        self.log = open(tmp / "mongrel2.log", "wb")
        env = dict(os.environ, M2_PORT=str(self.port), M2_BIND_ADDR="127.0.0.1",
                   M2_REQUESTS_SPEC=self.requests_endpoint, M2_RESPONSES_SPEC=self.responses_endpoint,
                   M2_RUN_DIR=str(tmp / "m2run"), M2_STATIC_DIR=str(ROOT / "mongrel2" / "static"),
                   M2_ACCESS_LOG="/dev/null", M2_ERROR_LOG=os.environ.get("M2_ERROR_LOG", "/dev/null"),
                   M2_IDLE_TIMEOUT=str(self.IDLE_TIMEOUT))
        self.process = subprocess.Popen(["sh", str(ROOT / "mongrel2" / "entrypoint.sh")],
                                        env=env, stdout=self.log, stderr=self.log)
        wait_until(lambda: urllib.request.urlopen(self.url + "/static/health.txt", timeout=1).status == 200,
                   15, "mongrel2 to serve /static/health.txt")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class HandlerProcess:
    def __init__(self, hub: str, mongrel2: Mongrel2 | None, tmp: Path, *,
                 requests_endpoint: str | None = None, responses_endpoint: str | None = None,
                 **extra_env: str):
        self.heartbeat = tmp / f"heartbeat-{hub}-{time.monotonic_ns()}"
        self.log_path = tmp / f"handler-{hub}.log"
        self.log = open(self.log_path, "wb")
        env = dict(os.environ,
                   M2_REQUESTS_ENDPOINT=requests_endpoint or mongrel2.requests_endpoint,
                   M2_RESPONSES_ENDPOINT=responses_endpoint or mongrel2.responses_endpoint,
                   HANDLER_HEARTBEAT_FILE=str(self.heartbeat), HANDLER_HEARTBEAT_INTERVAL="0.5",
                   PYTHONPATH=str(ROOT / "services"))
        env.update({"METRICS_PORT": "0", **extra_env})
        self.process = subprocess.Popen([sys.executable, "-m", f"m2stack.run_{hub}"],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_connected(self, timeout: float = 15, tick=lambda: None) -> None:
        """`tick` lets a test's own bound sockets process their commands meanwhile."""
        wait_until(lambda: tick() or self.heartbeat.exists() or self.process.poll() is not None,
                   timeout, "the handler to connect")
        assert self.process.poll() is None, self.output()

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


