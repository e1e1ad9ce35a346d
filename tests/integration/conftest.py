"""Process-level integration: the real mongrel2 binary and real handler processes on loopback.

Every test that needs a handler runs once per hub (the `hub` fixture), so each hub's
result is its own test.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from processes import HUBS, HandlerProcess, Mongrel2
from support import free_port, require


def pytest_collection_modifyitems(items):
    for item in items:
        if "mongrel2" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mongrel2)


@pytest.fixture(scope="session")
def mongrel2(tmp_path_factory):
    require("mongrel2", "the process-level tests run the real mongrel2 binary (Debian mongrel2-core)")
    require("m2sh", "mongrel2's config loader")
    server = Mongrel2(tmp_path_factory.mktemp("mongrel2"))
    yield server
    server.stop()


@pytest.fixture(params=HUBS)
def hub(request) -> str:
    return request.param


@pytest.fixture
def start_handler(mongrel2, hub, tmp_path):
    """Start a handler on this test's hub behind the shared mongrel2 (extra env as keywords),
    connected; every one is stopped after the test."""
    started: list[HandlerProcess] = []

    def start(**env: str) -> HandlerProcess:
        process = HandlerProcess(hub, mongrel2, tmp_path, **env)
        started.append(process)
        process.wait_connected()
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def handler(start_handler):
    return start_handler()


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on loopback (initdb + pg_ctl), as the `postgres` user
    when run as root; skipped where the server binaries are not installed."""
    require("initdb", "the test needs a PostgreSQL server (Debian's postgresql-15)")
    require("pg_ctl", "the test starts a throwaway PostgreSQL server")
    # Not under pytest's tmp (mode 700 to its owner): the server may run as another user.
    home = Path(tempfile.mkdtemp(prefix="m2stack-pg-"))
    home.chmod(0o777)
    data = home / "data"
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = free_port()
    done = subprocess.run([*as_user, "initdb", "-D", str(data), "-U", "m2stack", "--auth=trust", "-E", "UTF8"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    subprocess.run([*as_user, "pg_ctl", "-D", str(data), "-w", "-l", str(data.parent / "pg.log"), "-o",
                    f"-p {port} -k {data.parent} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    yield {"DB_HOST": "127.0.0.1", "DB_PORT": str(port), "DB_NAME": "postgres", "DB_USER": "m2stack"}
    subprocess.run([*as_user, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
