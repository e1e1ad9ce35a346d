"""mongrel2's knobs in its entrypoint (mongrel2/entrypoint.sh): M2_ZMQ_THREADS, and ipc://
handler sockets (compose/ipc.yml). A bad value is one line on stderr and exit status 64,
before anything is rendered; a good one reaches the rendered config and, for ipc://, the
umask the sockets are created with. "sh -c ..." stands in for mongrel2 as the command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def entrypoint(tmp_path: Path, *command: str, **env: str) -> subprocess.CompletedProcess:
    run_dir = tmp_path / "run"
    full = dict(os.environ, M2_RUN_DIR=str(run_dir), M2_STATIC_DIR=str(ROOT / "mongrel2" / "static"), **env)
    return subprocess.run(["sh", str(ROOT / "mongrel2" / "entrypoint.sh"), *(command or ("true",))], env=full,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("threads", ["0", "17", "two", ""])
def test_zmq_threads_outside_1_to_16_are_refused(tmp_path, threads):
    result = entrypoint(tmp_path, M2_ZMQ_THREADS=threads)
    if threads == "":   # empty is unset: the default, 1
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 64 and "M2_ZMQ_THREADS must be 1-16" in result.stderr, result


def test_zmq_threads_reach_mongrel2s_settings(tmp_path):
    result = entrypoint(tmp_path, M2_ZMQ_THREADS="2")
    assert result.returncode == 0, result.stderr
    assert '"zeromq.threads": 2,' in (tmp_path / "run" / "mongrel2.conf").read_text()


def test_an_ipc_path_too_long_for_a_unix_socket_is_refused(tmp_path):
    # sun_path holds 108 bytes with its NUL: 107 is the longest path that binds.
    long_dir = tmp_path / ("d" * (107 - len(f"{tmp_path}/") - len("/requests")))
    long_dir.mkdir()
    fits = f"ipc://{long_dir}/requests"
    assert len(fits) - len("ipc://") == 107
    accepted = entrypoint(tmp_path, M2_REQUESTS_SPEC=fits)
    assert accepted.returncode == 0, accepted.stderr
    result = entrypoint(tmp_path, M2_REQUESTS_SPEC=fits + "x")
    assert result.returncode == 64 and "too long for a unix socket" in result.stderr, result


def test_an_ipc_socket_in_a_missing_directory_is_refused(tmp_path):
    result = entrypoint(tmp_path, M2_RESPONSES_SPEC=f"ipc://{tmp_path}/absent/responses")
    assert result.returncode == 64 and "is not a directory writable by uid" in result.stderr, result


def test_ipc_handler_sockets_are_made_group_writable_and_tcp_ones_keep_the_umask(tmp_path):
    """A peer needs write permission on a unix socket to connect: with ipc:// the process
    runs with umask 007, so handlers of the shared group (compose/ipc.yml) get in."""
    ipc = entrypoint(tmp_path, "sh", "-c", "umask", M2_REQUESTS_SPEC=f"ipc://{tmp_path}/requests",
                     M2_RESPONSES_SPEC=f"ipc://{tmp_path}/responses")
    assert ipc.returncode == 0 and ipc.stdout.strip() == "0007", (ipc.stdout, ipc.stderr)
    tcp = entrypoint(tmp_path, "sh", "-c", "umask")
    assert tcp.returncode == 0 and tcp.stdout.strip() != "0007", (tcp.stdout, tcp.stderr)
