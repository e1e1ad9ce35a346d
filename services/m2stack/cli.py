"""The `m2stack` console script: serve an app behind a front door on a hub.

    m2stack serve --hub gevent --door mongrel2 myservice:create_app
    m2stack serve --hub eventlet --door wsgi myservice:create_app -- --workers 4

The hub monkey-patches the process before anything else is imported, so this module
imports only the standard library's argument parsing (no socket, no threading) until the
hub's own entry point (m2stack.run_gevent, m2stack.run_eventlet) has patched. The app is
named as `APP` names it (m2stack.apps); every setting comes from the environment
(m2stack.settings), the same variables the images read.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

HUBS = ("gevent", "eventlet")
DOORS = ("mongrel2", "wsgi")
# Gunicorn's worker class per hub: the worker patches each worker process itself.
WORKER_CLASS = {"gevent": "gevent", "eventlet": "eventlet"}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="m2stack", description="Serve an m2stack app.")
    top.add_argument("--version", action="store_true", help="print the installed version and exit")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="serve an app behind a front door on a hub",
        description="Serve APP (package.module:attr: an App, a factory taking a Startup, or a WSGI "
                    "callable). Settings come from the environment (see .env.example).")
    serve.add_argument("app", metavar="APP", nargs="?", default=None,
                       help="package.module:attr (default: $APP, else the demo)")
    serve.add_argument("--hub", choices=HUBS, default="gevent", help="the hub to patch with (default gevent)")
    serve.add_argument("--door", choices=DOORS, default="mongrel2",
                       help="mongrel2: a handler process connecting to M2_REQUESTS_ENDPOINT and "
                            "M2_RESPONSES_ENDPOINT; wsgi: Gunicorn listening on --bind (default mongrel2)")
    serve.add_argument("--bind", default=None,
                       help="wsgi door: the address Gunicorn listens on (default 0.0.0.0:$PORT, PORT 6767)")
    serve.add_argument("gunicorn_args", nargs=argparse.REMAINDER, metavar="-- GUNICORN_ARGS",
                       help="wsgi door: further Gunicorn options after --")
    return top


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("m2stack")
    except PackageNotFoundError:
        return "not installed (running from a source tree)"


def gunicorn_command(hub: str, bind: str | None, extra: list[str]) -> list[str]:
    """The Gunicorn command line of the WSGI door: Gunicorn in this interpreter."""
    bind = bind or f"0.0.0.0:{os.environ.get('PORT', '').strip() or '6767'}"
    extra = extra[1:] if extra[:1] == ["--"] else extra
    return [sys.executable, "-m", "gunicorn", "--worker-class", WORKER_CLASS[hub], "--bind", bind,
            *extra, "m2stack.run_wsgi:application"]


def serve(args: argparse.Namespace) -> int:
    if args.door == "mongrel2" and (args.bind or args.gunicorn_args):
        raise SystemExit("m2stack serve: --bind and Gunicorn options are for --door wsgi; the mongrel2 "
                         "door connects to M2_REQUESTS_ENDPOINT and M2_RESPONSES_ENDPOINT")
    if args.app:
        os.environ["APP"] = args.app  # read by m2stack.apps in this process or Gunicorn's workers
    if args.door == "wsgi":
        command = gunicorn_command(args.hub, args.bind, args.gunicorn_args)
        os.execv(command[0], command)  # Gunicorn becomes this process: signals reach it directly
    # The hub's entry point patches first, then imports the rest and serves until SIGTERM.
    runpy.run_module(f"m2stack.run_{args.hub}", run_name="__main__", alter_sys=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.version:
        print(f"m2stack {installed_version()}")
        return 0
    if args.command == "serve":
        return serve(args)
    parser().print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
