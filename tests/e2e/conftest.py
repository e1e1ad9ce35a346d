"""End-to-end: real containers from docker compose, real HTTP clients on loopback."""

import subprocess

import pytest

from stack import MONGREL2_VARIANTS, Stack
from support import missing, require


@pytest.fixture(scope="session")
def docker_available():
    require("docker", "the end-to-end tests run the stack in Docker")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing("the Docker daemon is not reachable")


@pytest.fixture(scope="module", params=list(MONGREL2_VARIANTS))
def stack(request, docker_available):
    """A running Mongrel2 stack per hub, with 3 handlers, shared by a module's tests.
    (tests/e2e/test_parity.py runs every variant, the WSGI ones included.)"""
    stack = Stack(request.param, MONGREL2_VARIANTS[request.param])
    stack.variant = request.param
    try:
        stack.up(handlers=3)
        yield stack
    finally:
        stack.down()
