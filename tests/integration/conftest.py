"""Process-level integration: the real mongrel2 binary and real handler processes on loopback.

Every test that needs a handler runs once per hub (the `hub` fixture), so each hub's
result is its own test.
"""

import pytest

from processes import HUBS, HandlerProcess, Mongrel2
from support import require


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
