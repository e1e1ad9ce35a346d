"""The multi-node tests: three Swarm nodes made on this machine by scripts/multinode.sh,
removed after, and the machine checked to be as it was before (namespaces, links, mounts,
daemons, the host daemon's swarm state, containers and image tags)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cluster import BASE, NET, PUSH_TO, script

from support import missing, require

HERE = Path(__file__).resolve().parent
# Docker probes every task each second (5 s by default): Swarm counts a task as running
# once it is healthy, and the tests wait on that.
os.environ.setdefault("HEALTHCHECK_INTERVAL", "1s")


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.docker)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(600))


def _lines(*args: str) -> list[str]:
    result = subprocess.run(args, capture_output=True, text=True)
    return sorted(result.stdout.split("\n")) if result.returncode == 0 else [f"<{' '.join(args)} failed>"]


def _ours(lines: list[str], *marks: str) -> list[str]:
    return [line for line in lines if any(mark in line for mark in marks)]


def machine_state() -> dict[str, list[str]]:
    """What the tests may leave changed: nothing. Only what they could have made is looked
    at (other suites run beside them): every process, namespace, link, route, mount, cgroup,
    container and image tag of theirs, and the host daemon's swarm state."""
    return {
        "namespaces": _ours(_lines("ip", "netns", "list"), "m2mn-"),
        "links": _ours(_lines("ip", "-br", "link"), "m2mn-"),
        "routes": _ours(_lines("ip", "route"), NET + "."),
        "processes": _ours(_lines("pgrep", "-af", BASE), BASE),
        "daemons": sorted(line.split(maxsplit=1)[1] for line in _lines("pgrep", "-a", "^dockerd$") if " " in line),
        "mounts": _ours(Path("/proc/self/mounts").read_text().splitlines(), BASE),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/m2mn-*")),
        "swarm": _lines("docker", "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}"),
        "containers": _ours(_lines("docker", "ps", "-a", "--format", "{{.Names}}"), "m2mn-"),
        "image tags": _ours(_lines("docker", "images", "--format", "{{.Repository}}:{{.Tag}}"), PUSH_TO),
    }


@pytest.fixture(scope="session")
def cluster():
    """Three nodes (n1 manager, n2 and n3 workers) and the registry; torn down after, and
    the machine compared with what it was."""
    require("docker", "the nodes are dockerd processes")
    for tool in ("dockerd", "ip", "nsenter", "unshare", "fuse-overlayfs", "curl"):
        require(tool, "scripts/multinode.sh makes the nodes with it")
    if os.geteuid() != 0:
        missing("the multi-node tests need root (network namespaces, dockerd)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing("the host's Docker daemon is not reachable (it runs the registry)")
    for image in ("m2stack/registry:latest",):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            missing(f"{image} is not built (make registry-image)")
    if shutil.which("docker") and Path(BASE).exists():
        pytest.fail(f"{BASE} exists: nodes of an earlier run are left (scripts/multinode.sh down)", pytrace=False)
    before = machine_state()
    try:
        script("up")
        script("registry-up")
        mounts = subprocess.run(["docker", "inspect", "--format", "{{range .Mounts}}{{.Type}} {{end}}",
                                 "m2mn-registry"], capture_output=True, text=True).stdout.split()
        assert "volume" not in mounts, f"the registry made a volume that would outlive it: {mounts}"
        yield
    finally:
        down = script("down", check=False)
        after = machine_state()
        changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
        assert down.returncode == 0, down.stderr[-2000:]
        assert not changed, f"the machine is not as the tests found it: {changed}"
