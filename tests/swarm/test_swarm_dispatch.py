"""The stack on Docker Swarm in its default shape, with the dispatcher (`make swarm-up`, no
DISPATCH given): 2 fronts x 3 handlers behind one dispatcher task that pulls from every
front (docs/dispatcher.md).

What it adds to test_swarm.py's stack: scaling the handlers loses nothing (a leaving
handler says BYE and finishes; the dispatcher gives it nothing new), and the dispatcher's
own task, killed, is replaced by Swarm and found again by every handler, by DNS, with
nothing restarted but it. Runs on its own stack, after test_swarm.py's is gone.
"""

from __future__ import annotations

import time

import pytest
from swarmlib import (
    Swarm,
    compose_config,
    docker,
    from_compose,
    from_services,
    log,
    summary,
    swarm_state,
    task_running_since,
)

FRONTS, HANDLERS = 2, 3
STACK_ENV = {"M2_IDLE_TIMEOUT": "8", "HANDLER_REQUEST_TIMEOUT": "5"}


@pytest.fixture(scope="module")
def swarm(engine_before):
    stack = Swarm(FRONTS, HANDLERS, STACK_ENV)
    began = time.monotonic()
    try:
        stack.make("swarm-up")
        log(f"make swarm-up FRONTS={FRONTS} HANDLERS={HANDLERS} (the dispatcher, by default): "
            f"{time.monotonic() - began:.1f}s to a converged stack")
        yield stack
    finally:
        stack.remove_clients()
        try:
            stack.make("swarm-down", timeout=240)
        finally:
            assert swarm_state() == engine_before["state"]


def test_the_default_is_the_base_files_shape_with_the_dispatcher(swarm):
    """What Swarm runs (`docker service inspect`) against `docker compose config` of the
    base file alone: the same services, the dispatcher among them."""
    expected = from_compose(compose_config("docker-compose.yml", env=swarm.env))
    running = from_services(swarm.name)
    assert set(running) == set(expected) == {"db", "mongrel2", "dispatcher", "handler"}
    for name in expected:
        assert running[name] == expected[name], name


def test_the_dispatcher_runs_and_serves_every_front(swarm):
    assert len(swarm.containers("dispatcher")) == 1
    report = swarm.burst(400)
    log(f"burst of 400 over {len(report['addresses'])} fronts through the dispatcher: {summary(report)}")
    assert report["failed"] == 0 and report["mismatched"] == 0 and report["ok"] == 400, report["failures"]
    assert len(report["fronts"]) == FRONTS
    handlers = {c["hostname"] for c in swarm.containers("handler")}
    served = {h.split(":")[0] for s in report["fronts"].values() for h in s["handlers"]}
    assert served == handlers, (served, handlers)


def test_scale_handlers_3_6_2_under_load_loses_nothing(swarm):
    load = swarm.load(4)
    try:
        load.flowing()
        docker("service", "scale", "--detach", f"{swarm.service('handler')}=6")
        up = swarm.wait_replicas("handler", 6)
        load.wait(lambda p: len({h for f in p["fronts"].values() for h in f["handlers"]}) >= 6, 60,
                  "the added handlers to take traffic")
        docker("service", "scale", "--detach", f"{swarm.service('handler')}=2")
        down = swarm.wait_replicas("handler", 2)
        load.settled_since(time.time())
        report = load.stop()
    finally:
        load.kill()
    served = {h for s in report["fronts"].values() for h in s["handlers"]}
    log(f"scale handlers 3->6 ({up:.1f}s) ->2 ({down:.1f}s) under load, through the dispatcher: "
        f"{summary(report)}; {len(served)} handlers served")
    assert report["failed"] == 0 and report["mismatched"] == 0, report["failures"]
    assert len(served) >= 6


def test_a_killed_dispatcher_is_replaced_and_found(swarm):
    handlers_before = sorted(c["id"] for c in swarm.containers("handler"))
    fronts_before = sorted(c["id"] for c in swarm.containers("mongrel2"))
    victim, = swarm.containers("dispatcher")
    load = swarm.load(4)
    probe = None
    try:
        load.flowing()
        killed_at = time.time()
        docker("kill", victim["id"])
        # Fresh clients from the kill on: the load's may all be waiting on requests the dead
        # dispatcher held, until mongrel2's reaper closes them (M2_IDLE_TIMEOUT, 8 s here).
        probe = swarm.load(1)
        deadline = time.monotonic() + 60
        while not [c for c in swarm.containers("dispatcher") if c["id"] != victim["id"]]:
            assert time.monotonic() < deadline, "no replacement dispatcher after 60 s"
            time.sleep(0.2)
        replacement, = [c for c in swarm.containers("dispatcher") if c["id"] != victim["id"]]
        swarm.wait_replicas("dispatcher", 1, timeout=60)
        running = task_running_since(replacement["task"])
        probe.flowing(20)  # handlers rejoined the new dispatcher
        load.settled_since(killed_at)  # what the killed one held is closed by the reaper (8 s)
        report = load.stop()
        probed = probe.stop()
    finally:
        load.kill()
        if probe is not None:
            probe.kill()
    probe_ok = sorted(t for s in probed["fronts"].values() for t in s.get("ok_times", []))
    first_ok = probe_ok[0] - killed_at if probe_ok else None
    log(f"dispatcher killed under load: {summary(report)}; replacement running {running - killed_at:.1f}s "
        f"after the kill; requests sent after the kill: {summary(probed)}, the first answered "
        f"{first_ok and round(first_ok, 1)}s after the kill; failures: {[f['kind'] for f in report['failures']]}")
    assert report["mismatched"] == 0 and probed["mismatched"] == 0
    # Lost: at most what the dead dispatcher held, one per client connection (4 per front).
    assert report["failed"] <= 4 * FRONTS, report["failures"]
    # What was sent while it was away waited in mongrel2 and was served.
    assert probed["failed"] == 0, probed["failures"]
    # The handlers found the new task by themselves, within seconds of Swarm listing it (it
    # does once the task is healthy). Resolving the name in libzmq's I/O thread took 10 s
    # here and stalled every reply with it.
    assert first_ok is not None and probe_ok[0] - running <= 5, (first_ok, running - killed_at)
    assert sorted(c["id"] for c in swarm.containers("handler")) == handlers_before
    assert sorted(c["id"] for c in swarm.containers("mongrel2")) == fronts_before
