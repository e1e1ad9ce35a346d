"""End-to-end: real containers from docker compose, real HTTP clients on loopback.

One stack factory (`stacks`) makes every stack of a module and removes them; `stack` is
the module's stack for one variant, chosen by indirect parametrisation:

    STACK = {"purpose": "io", "processes": 1, "env": {...}}     # the module's options
    @pytest.mark.parametrize("stack", DEMO, indirect=True, scope="module")
    def test_x(stack): ...

Tests that share a parameter share the stack; pytest groups them, so each variant's
stack comes up once per module and goes down before the next one comes up.

`demo_stack` is one stack per demo variant for the whole session, shared by the modules
that need only "the demo on this variant, 4 handlers or 2 workers" (test_parity.py,
test_production.py, test_stack.py): they parametrize it with `scope="session"`, pytest
runs every test of one variant together, and the tests that change the stack (kill, stop,
scale) put it back as they found it. A module aliases it as its `stack`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import IO

import pytest

from comparison.variants import VARIANTS
from stack import DEMO_STACK, Stack, hold_off_swarm_leave
from support import missing, require

HERE = Path(__file__).resolve().parent
# Docker probes every container each second here (5 s by default, docker-compose.yml): a
# stack counts as up from its first passing probes, so each stack comes up ~8 s sooner.
os.environ.setdefault("HEALTHCHECK_INTERVAL", "1s")
# Per test, the module's stack coming up included (its first test pays for that).
E2E_TIMEOUT = 600
LOG_LINES = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.docker)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test on a stack reports the tail of that stack's app logs: in CI the
    containers are gone before anyone can read them, and a 500's cause is only there."""
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for stack in {id(s): s for s in getattr(item, "funcargs", {}).values() if isinstance(s, Stack)}.values():
            tail = "\n".join(stack.logs(stack.app_service).splitlines()[-LOG_LINES:])
            report.sections.append((f"{stack.project}: the last {LOG_LINES} lines of {stack.app_service}", tail))
    return report


@pytest.fixture(scope="session")
def docker_available():
    require("docker", "the end-to-end tests run the stack in Docker")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing("the Docker daemon is not reachable")


class Stacks:
    """Brings stacks up; takes each down again and checks that nothing of it is left."""

    def __init__(self):
        self.live: list[Stack] = []
        self.leave_locks: dict[str, IO[str] | None] = {}

    def up(self, variant: str, purpose: str, *, processes: int | dict[str, int] = 1,
           env: dict[str, str] | None = None, extra_files: tuple[str, ...] = ()) -> Stack:
        """`processes`: app processes, or a number per front door ({"mongrel2": 1, "wsgi": 2})."""
        chosen = VARIANTS[variant]
        if isinstance(processes, dict):
            processes = processes[chosen.front_door]
        stack = Stack(chosen, purpose, env=env, extra_files=extra_files)
        self.live.append(stack)
        self.leave_locks[stack.project] = hold_off_swarm_leave()
        stack.up(processes)
        return stack

    def down(self, stack: Stack) -> None:
        self.live.remove(stack)
        try:
            stack.down()
        finally:
            lock = self.leave_locks.pop(stack.project, None)
            if lock is not None:
                lock.close()
        # `down --volumes` must leave no container, network or volume behind.
        assert stack.container_ids(all_states=True) == [], f"{stack.project}: containers left"
        assert stack.resources("network") == [], f"{stack.project}: networks left"
        assert stack.resources("volume") == [], f"{stack.project}: volumes left"

    def down_all(self) -> None:
        errors = []
        for stack in list(self.live):
            try:
                self.down(stack)
            except AssertionError as exc:
                errors.append(str(exc))
        assert not errors, errors


@pytest.fixture(scope="module")
def stacks(docker_available):
    factory = Stacks()
    try:
        yield factory
    finally:
        factory.down_all()


@pytest.fixture(scope="session")
def session_stacks(docker_available):
    factory = Stacks()
    try:
        yield factory
    finally:
        factory.down_all()


@pytest.fixture(scope="session")
def demo_stack(request, session_stacks):
    """The demo on variant `request.param`, shared by every module that asks for it."""
    made = session_stacks.up(request.param, "demo", **DEMO_STACK)
    yield made
    session_stacks.down(made)


@pytest.fixture(scope="module")
def stack(request, stacks):
    """The module's stack of variant `request.param`, with the module's STACK options."""
    options = dict(getattr(request.module, "STACK", {}))
    made = stacks.up(request.param, **options)
    yield made
    stacks.down(made)
