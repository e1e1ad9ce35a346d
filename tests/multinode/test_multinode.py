"""The stack on a three-node Swarm: images pulled from the registry, fronts on two nodes,
handlers on all three, and nodes drained, their manager killed and one powered off under
load, with what the clients lost counted and bounded.

The tests run in this order and share one deployment (each leaves the swarm as the next
expects it). Where things run is decided by labels, as docs/swarm.md tells an operator:

    n1  manager (leader)  m2stack.front=false m2stack.dispatcher=false  a handler
    n2  worker            m2stack.db=true                               a front, a handler, the db, the dispatcher
    n3  worker            m2stack.dispatcher=false                      a front, a handler

Bounds, from the design (docker-compose.yml, docs/dispatcher.md):
- the load keeps WORKERS requests in flight at most, so no failure can touch more;
- a dead handler's GETs are repeated elsewhere and its POSTs answered 503 once it has been
  silent DISPATCH_DEAD_AFTER (1 s): a client of a live front waits at most that, plus its
  request (< 0.1 s), plus LIVE_FRONT_SLACK for two busy cores;
- a client of a front whose node is gone gets no answer: it waits its own timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from cluster import (
    PULL_FROM,
    PUSH_TO,
    ROOT,
    STACK,
    Node,
    containers_by_id,
    node_states,
    nodes,
    run,
    running_on,
    script,
    tasks,
    wait_for,
)
from load import READ_TIMEOUT, Load, summary

N1, N2, N3 = nodes()
FRONTS = [N2, N3]
WORKERS_PER_FRONT = 6
WORKERS = WORKERS_PER_FRONT * len(FRONTS)
DISPATCH_DEAD_AFTER = 1.0
LIVE_FRONT_SLACK = 3.0
LIVE_FRONT_WORST_WAIT = DISPATCH_DEAD_AFTER + 0.1 + LIVE_FRONT_SLACK
# Swarm's failure detection: heartbeats every 2 s (scripts/multinode.sh), a node is Down
# after a few missed ones; then its tasks are started elsewhere (pulled images, healthy).
NODE_DOWN_WITHIN = 30
RESCHEDULED_WITHIN = 90
ELECTION_WITHIN = 60

COMPOSE = os.environ.get("COMPOSE") or (str(ROOT / ".tools/docker-compose") if (ROOT / ".tools/docker-compose").exists()
                                        else "docker compose")
PYTHON = os.environ.get("PYTHON", "python3")
ESP_PROBE = ["unshare", "-rn", "ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
             "spi", "0x100", "reqid", "1", "mode", "transport", "aead", "rfc4106(gcm(aes))",
             "0x0102030405060708090a0b0c0d0e0f1011121314", "128"]


def kernel_has_esp() -> bool:
    """What Docker needs to encrypt an overlay between nodes, tried in a throwaway namespace."""
    return subprocess.run(ESP_PROBE, capture_output=True).returncode == 0


def swarm_env(node: Node, **settings: str) -> dict:
    return node.env(COMPOSE=COMPOSE, PYTHON=PYTHON, SWARM_STACK=STACK, HUB="gevent", DISPATCH="1",
                    FRONTS="2", HANDLERS="3", SWARM_PUBLISH="host", HTTP_PUBLISH="6767", SWARM_WAIT="300",
                    **settings)


def leader_among(candidates) -> Node | None:
    return next((n for n in candidates if node_states(n)[n.name][2] == "Leader"), None)


def on_the_leader(candidates, *args: str) -> Node:
    """Run a manager command on whichever candidate leads, again while leadership settles
    ("node lost leader status" right after an election): what an operator does too."""
    def attempt():
        leader = leader_among(candidates)
        if leader is None:
            return None
        result = run("docker", "-H", leader.host, *args, check=False)
        if result.returncode == 0:
            return leader
        if "leader" not in result.stderr and "raft" not in result.stderr:
            raise RuntimeError(f"{' '.join(args)} on {leader.name}: {result.stderr}")
        return None
    return wait_for(attempt, ELECTION_WITHIN, f"{' '.join(args)} accepted by a leader")


def report(title: str, outcomes, **figures) -> dict:
    document = {"what": title, "fronts": summary(outcomes), **figures}
    print("\nmultinode: " + json.dumps(document), flush=True)
    return document


def answered_by_a_new_handler(load: Load, front: Node, since: float, known: set[str]) -> bool:
    return any(o.kind == "ok" and o.handler.split(":")[0] not in known
               for o in load.since(since) if o.front == front.address)


def handler_ids(node_list) -> dict[str, str]:
    """Handler container id -> its node's name, for every node given."""
    return {cid: node.name for node in node_list for cid, service in containers_by_id(node).items()
            if service == f"{STACK}_handler"}


@pytest.fixture(scope="module")
def labelled(cluster):
    """The stack's images in the registry, the nodes labelled, nothing deployed yet."""
    started = time.monotonic()
    host_daemon = {k: v for k, v in swarm_env(N1, REGISTRY=PUSH_TO).items() if k != "DOCKER_HOST"}
    run("bash", "scripts/swarm.sh", "push", env=host_daemon)
    print(f"\nmultinode: pushed the stack's images in {time.monotonic() - started:.1f}s", flush=True)
    N1.docker("node", "update", "--label-add", "m2stack.front=false", "--label-add", "m2stack.dispatcher=false",
              N1.name)
    N1.docker("node", "update", "--label-add", "m2stack.db=true", N2.name)
    N1.docker("node", "update", "--label-add", "m2stack.dispatcher=false", N3.name)
    for node in nodes():
        assert node.docker("images", "-q") == "", f"{node.name} has images before the deploy"
    yield
    shutil.rmtree(ROOT / "build" / "swarm" / STACK, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(labelled):
    encrypt = "1" if kernel_has_esp() else "0"
    started = time.monotonic()
    result = run("bash", "scripts/swarm.sh", "up", env=swarm_env(N1, REGISTRY=PULL_FROM, SWARM_ENCRYPT=encrypt))
    print(f"\nmultinode: deployed (SWARM_ENCRYPT={encrypt}) and converged in {time.monotonic() - started:.1f}s",
          flush=True)
    return result


def test_an_encrypted_overlay_between_nodes_is_refused_on_a_kernel_without_esp(labelled):
    if kernel_has_esp():
        pytest.skip("this kernel has ESP: the stack deploys encrypted and the next tests cross nodes on it")
    result = run("bash", "scripts/swarm.sh", "up", env=swarm_env(N1, REGISTRY=PULL_FROM), check=False)
    assert result.returncode != 0, result.stderr
    refusal = [line for line in result.stderr.splitlines() if "SWARM_ENCRYPT=0" in line]
    assert len(refusal) == 1 and "cannot encrypt" in refusal[0], result.stderr
    assert N1.docker("service", "ls", "-q") == "", "something was deployed before the refusal"


def test_nodes_pull_the_images_from_the_registry(stack):
    for service in ("mongrel2", "dispatcher", "handler", "db"):
        image = N1.docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                          f"{STACK}_{service}")
        assert image.startswith(f"{PULL_FROM}/") and "@sha256:" in image, image
    for node in nodes():
        images = node.docker("images", "--format", "{{.Repository}}").split()
        assert images and all(name.startswith(f"{PULL_FROM}/") for name in images), (node.name, images)


def test_the_stack_is_spread_as_the_labels_say_and_both_fronts_reach_every_handler(stack):
    assert running_on(N1, "mongrel2") == [N2.name, N3.name]
    assert running_on(N1, "handler") == [N1.name, N2.name, N3.name]
    assert running_on(N1, "dispatcher") == [N2.name]
    assert running_on(N1, "db") == [N2.name]
    where = handler_ids(nodes())
    load = Load([f.address for f in FRONTS], workers_per_front=WORKERS_PER_FRONT).start()
    began = time.time()
    try:
        wait_for(lambda: all({where.get(o.handler.split(":")[0]) for o in load.since(began)
                              if o.front == front.address and o.kind == "ok"} >= set(where.values())
                             for front in FRONTS),
                 60, "every handler answering through both fronts")
    finally:
        outcomes = load.stop()
    report("spread", outcomes, handlers=where)
    assert all(o.kind == "ok" for o in outcomes), [o for o in outcomes if o.kind != "ok"][:5]


def test_a_node_drained_under_load_loses_nothing(stack):
    before = handler_ids(nodes())
    load = Load([f.address for f in FRONTS], workers_per_front=WORKERS_PER_FRONT).start()
    try:
        wait_for(lambda: all(load.ok_through(f.address, 0) > 10 for f in FRONTS), 60, "answers through both fronts")
        drained_at = time.time()
        N1.docker("node", "update", "--availability", "drain", N1.name)
        wait_for(lambda: N1.name not in running_on(N1, "handler") and len(running_on(N1, "handler")) == 3,
                 RESCHEDULED_WITHIN, "n1's handler started on another node")
        moved = time.time() - drained_at
        wait_for(lambda: any(answered_by_a_new_handler(load, f, drained_at, set(before)) for f in FRONTS),
                 30, "the moved handler answering")
        time.sleep(1)
    finally:
        outcomes = load.stop()
        N1.docker("node", "update", "--availability", "active", N1.name)
    report("drain n1", outcomes, handler_moved_s=round(moved, 1))
    assert [o for o in outcomes if o.kind != "ok"] == []


def test_the_leader_killed_under_load_the_stack_serves_and_a_new_leader_scales_it(stack):
    N1.docker("node", "promote", N2.name, N3.name)
    wait_for(lambda: [node_states(N1)[n.name][2] for n in nodes()] == ["Leader", "Reachable", "Reachable"],
             60, "three managers, n1 leading")
    load = Load([f.address for f in FRONTS], workers_per_front=WORKERS_PER_FRONT).start()
    try:
        wait_for(lambda: all(load.ok_through(f.address, 0) > 10 for f in FRONTS), 60, "answers through both fronts")
        killed_at = time.time()
        script("kill-daemon", "1")
        wait_for(lambda: leader_among((N2, N3)), ELECTION_WITHIN, "a new leader among n2 and n3")
        elected = time.time() - killed_at
        leader = on_the_leader((N2, N3), "service", "scale", "-d", f"{STACK}_handler=4")
        wait_for(lambda: len([n for n in running_on(leader_among((N2, N3)) or leader, "handler") if n != N1.name]) >= 4,
                 RESCHEDULED_WITHIN, "4 handlers running on n2 and n3")
        scaled = time.time() - killed_at
        served_after = {f.name: load.ok_through(f.address, killed_at) for f in FRONTS}
        script("start-daemon", "1")
        wait_for(lambda: node_states(N2)[N1.name][0] == "Ready" and node_states(N2)[N1.name][2] == "Reachable",
                 90, "n1 back, a reachable manager")
        time.sleep(1)
    finally:
        outcomes = load.stop()
    report("leader n1's dockerd killed", outcomes, leader=leader.name, elected_s=round(elected, 1),
           scaled_to_4_s=round(scaled, 1), answered_since_kill=served_after)
    failures = [o for o in outcomes if o.kind != "ok"]
    # n1's handler runs on while its dockerd is dead; the restarted dockerd removes it. If that
    # is a kill, its POSTs in flight are refused: never a GET, never more than are in flight.
    assert all(o.method == "POST" and o.status == 503 for o in failures), failures[:5]
    assert len(failures) <= WORKERS
    assert all(count > 0 for count in served_after.values())
    # n3 is to be lost as a worker: demoted first (n1 and n2 stay managers).
    on_the_leader(nodes(), "node", "demote", N3.name)


def test_a_worker_node_powered_off_under_load(stack):
    manager = wait_for(lambda: leader_among((N1, N2)), ELECTION_WITHIN, "a leader among n1 and n2")
    on_n3 = running_on(manager, "handler").count(N3.name)
    load = Load([f.address for f in FRONTS], workers_per_front=WORKERS_PER_FRONT).start()
    try:
        wait_for(lambda: all(load.ok_through(f.address, 0) > 10 for f in FRONTS), 60, "answers through both fronts")
        off_at = time.time()
        script("poweroff", "3")
        wait_for(lambda: node_states(manager)[N3.name][0] == "Down", NODE_DOWN_WITHIN, "n3 Down")
        down = time.time() - off_at
        wait_for(lambda: len([n for n in running_on(manager, "handler") if n != N3.name]) == 4,
                 RESCHEDULED_WITHIN, "n3's handlers started on n1 and n2")
        rescheduled = time.time() - off_at
        time.sleep(1)
    finally:
        outcomes = load.stop()
    live = [o for o in outcomes if o.front == N2.address]
    # The dead front's clients: those in flight when it went, and any that came after.
    dead = [o for o in outcomes if o.front == N3.address and o.began + o.seconds > off_at]
    report("n3 powered off", outcomes, handlers_on_n3=on_n3, down_s=round(down, 1),
           rescheduled_s=round(rescheduled, 1),
           dead_front_worst_wait_s=round(max((o.seconds for o in dead), default=0), 1),
           live_front_worst_wait_s=round(max(o.seconds for o in live), 2))
    failures = [o for o in live if o.kind != "ok"]
    # Through the front that lives: n3's handlers' GETs repeated elsewhere, POSTs refused.
    assert all(o.method == "POST" and o.status == 503 for o in failures), failures[:5]
    assert len(failures) <= WORKERS
    assert max(o.seconds for o in live) <= LIVE_FRONT_WORST_WAIT, sorted(o.seconds for o in live)[-5:]
    assert sum(o.kind == "ok" and o.began > off_at + LIVE_FRONT_WORST_WAIT for o in live) > 0
    # Through the front that is gone: nothing answers, and no client waits past its timeout.
    assert not any(o.kind == "ok" for o in dead if o.began > off_at + 0.5)
    assert max((o.seconds for o in dead), default=0) <= READ_TIMEOUT + 1
    # The front stays away: one per node, and no other node may hold one.
    assert running_on(manager, "mongrel2") == [N2.name]
    assert any("no suitable node" in t["Error"] or t["CurrentState"].startswith("Pending")
               for t in tasks(manager, "mongrel2") if t["Node"] != N2.name)
