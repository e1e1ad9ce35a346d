"""The `m2stack` console script: its command line, and nothing imported before the hub patches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from m2stack import cli

ROOT = Path(__file__).resolve().parents[2]
# What a hub's monkey-patching must see unimported: patched afterwards, a module keeps
# references to the blocking originals.
PATCHED_LATER = {"socket", "ssl", "select", "selectors", "threading",
                 "subprocess", "queue", "zmq", "gevent", "eventlet", "psycopg2", "msgspec", "m2stack.app"}


def test_importing_the_cli_imports_nothing_a_hub_patches():
    probe = ("import sys; before = set(sys.modules); import m2stack.cli; "
             "print(' '.join(sorted(set(sys.modules) - before)))")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "services"))
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "m2stack.cli" in loaded
    assert not loaded & PATCHED_LATER, sorted(loaded & PATCHED_LATER)


def test_serve_takes_hub_door_and_app():
    args = cli.parser().parse_args(["serve", "--hub", "eventlet", "--door", "wsgi", "notes:create_app"])
    assert (args.hub, args.door, args.app) == ("eventlet", "wsgi", "notes:create_app")


@pytest.mark.parametrize("argv", [["serve", "--hub", "asyncio", "x:y"], ["serve", "--door", "http", "x:y"]])
def test_an_unknown_hub_or_door_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_gunicorn_runs_in_this_interpreter_with_the_hubs_worker(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    assert cli.gunicorn_command("eventlet", None, ["--", "--workers", "3"]) == [
        sys.executable, "-m", "gunicorn", "--worker-class", "eventlet", "--bind", "0.0.0.0:6767",
        "--workers", "3", "m2stack.run_wsgi:application"]
    monkeypatch.setenv("PORT", "8080")
    assert cli.gunicorn_command("gevent", None, [])[5:7] == ["--bind", "0.0.0.0:8080"]
    assert cli.gunicorn_command("gevent", "127.0.0.1:9", [])[5:7] == ["--bind", "127.0.0.1:9"]


def test_gunicorn_options_with_the_mongrel2_door_stop_with_one_line(monkeypatch):
    monkeypatch.delenv("APP", raising=False)
    with pytest.raises(SystemExit) as caught:
        cli.main(["serve", "--door", "mongrel2", "--bind", "127.0.0.1:1", "x:y"])
    assert "--door wsgi" in str(caught.value.code)
    assert "APP" not in os.environ  # stopped before it chose anything


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_version_from_a_source_tree_says_so(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("m2stack ")
