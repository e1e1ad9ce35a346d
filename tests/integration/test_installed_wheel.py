"""The package as a user installs it: the wheel built from this repository (the test
image's wheelhouse, beside the gevent lock's wheels), `pip install`ed into a fresh venv
with no index, so its declared dependencies must resolve; then its console script serves
the notes example (examples/notes) behind the real mongrel2 and under Gunicorn, and the
example's own tests pass against it."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from processes import ROOT
from support import free_port, wait_until

WHEELHOUSE = ROOT / "wheelhouse"
EXAMPLE = ROOT / "examples" / "notes"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv (Debian's python3, not the test image's venv) with m2stack[gevent,wsgi]."""
    if not WHEELHOUSE.is_dir():
        pytest.skip("no wheelhouse: the test image carries it (services/Dockerfile, stage wheelhouse)")
    path = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(path)], check=True, capture_output=True)
    installed = subprocess.run(
        [str(path / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(WHEELHOUSE),
         "m2stack[gevent,wsgi]"], capture_output=True, text=True, env=clean_env(), timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the test image's source tree and venv: only what pip installed."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


def run_example_tests(url: str) -> None:
    """examples/notes/tests, as its README says: NOTES_URL=... python3 -m pytest examples/notes/tests."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                          cwd=ROOT, env=dict(os.environ, NOTES_URL=url), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-1000:]


def test_the_wheel_installs_the_package_and_its_console_script(venv):
    version = subprocess.run([str(venv / "bin" / "m2stack"), "--version"], env=clean_env(),
                             capture_output=True, text=True, check=True)
    assert version.stdout.strip() == "m2stack 0.1.0"
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import m2stack, pathlib; print(m2stack.__file__)"],
                           env=clean_env(), capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(venv)), where.stdout  # the installed copy, not the source tree
    probe = "import importlib.resources as r; print(r.files('m2stack').joinpath('py.typed').is_file())"
    typed = subprocess.run([str(venv / "bin" / "python"), "-c", probe],
                           env=clean_env(), capture_output=True, text=True, check=True)
    assert typed.stdout.strip() == "True"


def test_the_console_script_serves_the_example_behind_mongrel2(venv, mongrel2, postgres, tmp_path):
    heartbeat = tmp_path / "heartbeat"
    log = open(tmp_path / "m2stack.log", "wb")  # noqa: SIM115 (closed below)
    env = clean_env(PYTHONPATH=str(EXAMPLE), M2_REQUESTS_ENDPOINT=mongrel2.requests_endpoint,
                    M2_RESPONSES_ENDPOINT=mongrel2.responses_endpoint, HANDLER_HEARTBEAT_FILE=str(heartbeat),
                    HANDLER_HEARTBEAT_INTERVAL="0.5", METRICS_PORT="0", **postgres)
    process = subprocess.Popen([str(venv / "bin" / "m2stack"), "serve", "--hub", "gevent", "--door", "mongrel2",
                                "notes:create_app"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: heartbeat.exists() or process.poll() is not None, 20, "the handler to connect")
        assert process.poll() is None, (tmp_path / "m2stack.log").read_text()
        served = _NO_PROXY.open(mongrel2.url + "/notes", timeout=10)
        assert served.headers["X-Hub"] == "gevent" and served.headers["X-Front-Door"] == "mongrel2"
        run_example_tests(mongrel2.url)
    finally:
        process.terminate()
        process.wait(15)
        log.close()
    assert "Traceback" not in (tmp_path / "m2stack.log").read_text()


def test_the_console_script_serves_the_example_under_gunicorn(venv, postgres, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 (closed below)
    env = clean_env(PYTHONPATH=str(EXAMPLE), **postgres)
    process = subprocess.Popen([str(venv / "bin" / "m2stack"), "serve", "--hub", "gevent", "--door", "wsgi",
                                "--bind", f"127.0.0.1:{port}", "notes:create_app", "--", "--workers", "1"],
                               cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def answers() -> bool:
        try:
            return _NO_PROXY.open(url + "/notes", timeout=2).status == 200
        except OSError:
            return process.poll() is not None

    try:
        wait_until(answers, 30, "Gunicorn to serve /notes")
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
        served = _NO_PROXY.open(url + "/notes", timeout=10)
        assert served.headers["X-Hub"] == "gevent" and served.headers["X-Front-Door"] == "wsgi"
        run_example_tests(url)
    finally:
        process.terminate()
        process.wait(20)
        log.close()
