"""Process-level integration: the real mongrel2 binary and real handler processes on loopback."""

import pytest

from processes import HandlerProcess, Mongrel2
from support import require

HUBS = ["gevent", "eventlet"]


@pytest.fixture(scope="session")
def mongrel2(tmp_path_factory):
    require("mongrel2", "the process-level tests run the real mongrel2 binary (Debian mongrel2-core)")
    require("m2sh", "mongrel2's config loader")
    server = Mongrel2(tmp_path_factory.mktemp("mongrel2"))
    yield server
    server.stop()


@pytest.fixture(params=HUBS)
def handler(request, mongrel2, tmp_path):
    process = HandlerProcess(request.param, mongrel2, tmp_path)
    process.wait_connected()
    process.hub = request.param
    yield process
    process.stop()
