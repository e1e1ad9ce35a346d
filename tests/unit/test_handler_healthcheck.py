"""The handler images' healthcheck, run as Docker runs it: the CMD of services/Dockerfile
(a shell and find, no Python), against a heartbeat file of a chosen age. Healthy while the
file is under 3 heartbeat intervals + 1 s old (rounded up to a whole second); missing or
older is unhealthy, with one line saying why."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "services" / "Dockerfile"


def handler_probe() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    commands = [json.loads(m.group(1)) for m in re.finditer(r"^HEALTHCHECK [^\n]*?CMD (\[.*\])$", text, re.M)]
    probe, = [c for c in commands if "handler-heartbeat" in " ".join(c)]
    return probe


def run_probe(tmp_path: Path, age: float | None, **env: str) -> subprocess.CompletedProcess:
    beat = tmp_path / "beat"
    if age is not None:
        beat.touch()
        os.utime(beat, (time.time() - age, time.time() - age))
    environment = {"PATH": os.environ["PATH"], "HANDLER_HEARTBEAT_FILE": str(beat), **env}
    return subprocess.run(handler_probe(), env=environment, capture_output=True, text=True, timeout=10)


# Mutations run (2026-12-05): the limit at 30 intervals (2 cases fail) and `-newer` for
# `-newermt` (3 fail).
@pytest.mark.parametrize(("interval", "age", "healthy"), [
    ("", 1.0, True),       # the default interval, 2 s: limit 7 s
    ("", 5.5, True),
    ("", 9.0, False),
    ("0.5", 1.5, True),    # limit 3 s (2.5, rounded up)
    ("0.5", 4.5, False),
    ("", None, False),     # no heartbeat yet: not connected to mongrel2
])
def test_healthy_only_while_the_heartbeat_is_fresh(tmp_path, interval, age, healthy):
    done = run_probe(tmp_path, age, HANDLER_HEARTBEAT_INTERVAL=interval)
    assert (done.returncode == 0) is healthy, (done.returncode, done.stdout, done.stderr)
    if not healthy:
        assert "heartbeat" in done.stdout and "missing or over" in done.stdout, done.stdout
