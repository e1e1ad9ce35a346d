"""The PaaS way in (docs/paas.md): the repository's Procfile, run by honcho (a real Procfile
runner, what `heroku local` is built on), serves the WSGI variant on $PORT with
$WEB_CONCURRENCY workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from support import free_port, missing, require, wait_until

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def procfile() -> Path:
    if not PROCFILE.is_file():
        missing(f"{PROCFILE} is not there (the test image must COPY Procfile into /app)")
    return PROCFILE


def test_procfile_declares_only_a_web_process(procfile):
    entries = dict(line.split(":", 1) for line in procfile.read_text().splitlines()
                   if line.strip() and not line.startswith("#"))
    # No release phase: there is no migration step (services/postgres/init.sql is a one-time seed).
    assert set(entries) == {"web"}
    assert "$PORT" not in entries["web"], "the port comes from gunicorn.conf.py (PORT), not the command line"


class Honcho:
    def __init__(self, port: int, workers: int):
        honcho = require("honcho", "the Procfile test runs it under honcho (services/requirements/test.in)")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the Procfile sets it
        env.update(PORT=str(port), WEB_CONCURRENCY=str(workers), METRICS_PORT="0",
                   PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
        self.lines: list[str] = []
        self.process = subprocess.Popen([honcho, "-f", str(PROCFILE), "-d", str(ROOT), "start"],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # honcho passes it on to every process
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.reader.join(5)
        return self.process.returncode


def test_web_answers_on_port_under_honcho(procfile):
    port = free_port()
    web = Honcho(port, workers=2)
    try:
        url = f"http://127.0.0.1:{port}/json"
        wait_until(lambda: _NO_PROXY.open(url, timeout=2).status == 200, 60,
                   f"the Procfile's web process on $PORT={port}")
        with _NO_PROXY.open(url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["X-Front-Door"] == "wsgi"
            assert response.headers["X-Hub"] == "gevent"
            assert response.read() == b'{"message":"Hello, World!"}'
        # Workers from WEB_CONCURRENCY, listening on PORT (gunicorn's own log lines).
        wait_until(lambda: len(re.findall(r"Booting worker with pid", web.output)) == 2, 30,
                   "two workers (WEB_CONCURRENCY=2)")
        assert f"Listening at: http://0.0.0.0:{port}" in web.output
    finally:
        returncode = web.stop()
    # A graceful stop: Gunicorn's master said so, and honcho, told to stop by SIGTERM,
    # exits 128 + SIGTERM (as a dyno manager's SIGTERM would end it).
    assert "Shutting down: Master" in web.output, web.output[-3000:]
    assert "web.1 stopped" in web.output, web.output[-3000:]
    assert returncode == 128 + signal.SIGTERM, (returncode, web.output[-3000:])
