"""Helpers shared by every test layer.

`require(tool)`: a test that needs Docker or mongrel2 skips when it is missing,
except with CI=true, where it fails: CI must never pass by skipping.
"""

import os
import shutil
import socket
import time

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(message: str) -> None:
    """Skip, except under CI=true, where a missing tool fails the test."""
    if IN_CI:
        pytest.fail(message + " (CI=true: missing tools fail, they never skip)", pytrace=False)
    pytest.skip(message)


def require(executable: str, why: str) -> str:
    path = shutil.which(executable)
    if path is None:
        missing(f"{executable} not found: {why}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
