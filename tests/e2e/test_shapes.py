"""Which shape each set of compose files gives, read from `docker compose config` (no
container is started): the base file alone is the dispatcher's shape, compose/bare.yml
the bare one, and every variant of the table is the shape its `dispatched` says.

The dispatcher's shape: mongrel2 -> the dispatcher -> handlers, each handler pointed at
the dispatcher and started only once it is healthy. The bare shape: no dispatcher
container at all (scale 0), handlers pulling from mongrel2. Never a handler pointed at a
dispatcher that does not run, nor a dispatcher running with no handler pointed at it.
Compose v1 (unsupported for `up`, docs in README) must still load every variant's files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from comparison.variants import BARE, BASE, IPC, VARIANTS
from stack import COMPOSE, ROOT
from support import require

# Overlays that go on top of a variant rather than make one.
ADD_ONS = ("compose/tls.yml", "compose/monitoring.yml", "compose/loadtest.yml", "compose/swarm.yml")
SHAPES = [(BASE,), (BASE, BARE)]   # the dispatcher's, the bare one


def config(*files: str) -> dict:
    """`docker compose config` of these files, in an environment that sets none of the
    stack's variables (a developer's HANDLER_DISPATCHER must not decide the test)."""
    require(COMPOSE[0], "these tests read `docker compose config`")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HANDLER_", "DISPATCH_", "M2_"))}
    args = [arg for file in files for arg in ("-f", str(ROOT / file))]
    out = subprocess.run([*COMPOSE, "-p", "m2shapes", *args, "config", "--format", "json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (files, out.stderr[-2000:])
    return json.loads(out.stdout)


def running(services: dict) -> set[str]:
    """The services that get containers: enabled (not in a profile left off) and not of scale 0."""
    return {name for name, service in services.items() if service.get("scale", 1) != 0}


def check_shape(services: dict) -> bool:
    """Whether a dispatcher runs; fails on a handler pointed at a dispatcher that does not
    run, or started before it is healthy, and on a dispatcher no handler is pointed at."""
    up = running(services)
    dispatched = "dispatcher" in up
    if "handler" in up:
        handler = services["handler"]
        pointed = handler["environment"].get("HANDLER_DISPATCHER") or ""
        if dispatched:
            port = services["dispatcher"]["environment"]["DISPATCH_BIND"].rsplit(":", 1)[1]
            assert pointed == f"tcp://dispatcher:{port}", pointed
            assert handler["depends_on"]["dispatcher"]["condition"] == "service_healthy"
        else:
            assert pointed == "", f"handlers pointed at {pointed!r}, and no dispatcher runs"
    else:
        assert not dispatched, "a dispatcher with no handler service"
    return dispatched


def test_the_base_file_alone_is_the_dispatchers_shape():
    services = config(BASE)["services"]
    assert running(services) == {"db", "mongrel2", "dispatcher", "handler"}
    assert check_shape(services) is True
    assert services["dispatcher"]["depends_on"]["mongrel2"]["condition"] == "service_healthy"
    # The dispatcher pulls from mongrel2; handlers still reply to mongrel2 directly.
    assert services["dispatcher"]["environment"]["M2_REQUESTS_ENDPOINT"] == "tcp://mongrel2:9997"
    assert services["handler"]["environment"]["M2_RESPONSES_ENDPOINT"] == "tcp://mongrel2:9996"
    assert [name for name, s in services.items() if s.get("ports")] == ["mongrel2"]


def test_the_bare_overlay_runs_no_dispatcher():
    services = config(BASE, BARE)["services"]
    assert running(services) == {"db", "mongrel2", "handler"}
    assert check_shape(services) is False


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_is_the_shape_the_table_says(name):
    variant = VARIANTS[name]
    services = config(*variant.files)["services"]
    assert check_shape(services) is variant.dispatched
    assert variant.app_service in running(services)
    assert (BARE in variant.files) is (variant.front_door == "mongrel2" and not variant.dispatched)


@pytest.mark.parametrize("add_on", ADD_ONS)
@pytest.mark.parametrize("shape", SHAPES, ids=["dispatcher", "bare"])
def test_the_overlays_added_on_top_keep_the_shape(shape, add_on):
    assert check_shape(config(*shape, add_on)["services"]) is (shape == (BASE,))


def test_compose_v1_still_loads_every_variants_files():
    """`up` needs Compose v2 (the Makefile refuses v1), but a v1 user reading the files
    must not hit a syntax v1 lacks (`!reset`, `required:`). Runs where a v1 is installed."""
    v1 = shutil.which("docker-compose")
    version = subprocess.run([v1, "version", "--short"], capture_output=True, text=True).stdout if v1 else ""
    if not version.startswith("1."):
        pytest.skip("no Compose v1 (docker-compose 1.x) on PATH: it is not a requirement")
    # Every variant's set, and every add-on at once on each shape (v1 is a Python program:
    # about 0.4 s of CPU a call, so two at a time and no more calls than that).
    sets = sorted({tuple(v.files) for v in VARIANTS.values()} | {(*shape, *ADD_ONS) for shape in SHAPES})

    def load(files: tuple[str, ...]) -> str:
        args = [arg for file in files for arg in ("-f", str(ROOT / file))]
        out = subprocess.run([v1, "-p", "m2shapes", *args, "config", "-q"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        return out.stderr[-500:] if out.returncode else ""

    with ThreadPoolExecutor(2) as pool:
        failed = {files: error for files, error in zip(sets, pool.map(load, sets), strict=True) if error}
    assert not failed, failed


def test_the_ipc_overlay_points_every_puller_at_the_sockets_mongrel2_binds():
    """compose/ipc.yml: mongrel2 binds both sockets in the shared volume, the handlers
    and the dispatcher connect to those very paths, all three mount that volume."""
    for shape in SHAPES:
        services = config(*shape, IPC)["services"]
        front = services["mongrel2"]["environment"]
        sockets = (front["M2_REQUESTS_SPEC"], front["M2_RESPONSES_SPEC"])
        assert all(spec.startswith("ipc:///run/m2-ipc/") for spec in sockets), sockets
        for puller in ("handler", "dispatcher"):
            env = services[puller]["environment"]
            assert (env["M2_REQUESTS_ENDPOINT"], env["M2_RESPONSES_ENDPOINT"]) == sockets, (shape, puller)
        for name in ("mongrel2", "handler", "dispatcher"):
            assert any(v.get("target") == "/run/m2-ipc" for v in services[name]["volumes"]), name
