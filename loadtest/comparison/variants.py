"""The variants: the one table that `make compare`, the e2e tests and the Makefile read.

A variant is the app behind one front door on one hub, described by the compose files
that bring it up (relative to the repository root). Standard library only and Python 3.9
syntax, so it runs as a script too on an older host (the Makefile's view of the table):

    python3 loadtest/comparison/variants.py files wsgi-eventlet   -f docker-compose.yml -f ...
    python3 loadtest/comparison/variants.py names                 every name, one a line
    python3 loadtest/comparison/variants.py images                compose arguments, one build a line
    python3 loadtest/comparison/variants.py scale NAME N          --scale handler=N, or nothing
    python3 loadtest/comparison/variants.py prebuild NAME         compose arguments building the image
                                                                  NAME's Dockerfile starts FROM, or nothing
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

BASE = "docker-compose.yml"
# The bare shape: no dispatcher, mongrel2 PUSHes straight to the handlers (the base file
# alone is the dispatcher's shape, the default).
BARE = "compose/bare.yml"
# Mongrel2's knobs, each A/B'd against the bare shape: ipc:// to the handlers of one host,
# and two ZeroMQ I/O threads in mongrel2.
IPC = "compose/ipc.yml"
ZMQ_THREADS = "compose/zmq-threads.yml"
# Overlays that change no image (settings, volumes, scale only): `images` leaves them out.
NO_IMAGE = (BARE, IPC, ZMQ_THREADS)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    files: tuple[str, ...]     # compose files, relative to the repository root
    front_door: str            # "mongrel2" | "wsgi" | "asgi" (the X-Front-Door header)
    hub: str | None            # the X-Hub header: "gevent" | "eventlet" | "blocking" | "uvloop";
                               # None: the ceiling (no hub, no app)
    app_service: str           # the compose service whose processes run the app
    target: str                # base URL inside the compose network (what load generators use)
    # Mongrel2 variants run N one-process containers (--scale); a WSGI variant runs one
    # container of N worker processes, N given by this variable.
    workers_env: str | None
    cpus_env: str              # compose variable of the app service's CPU limit
    in_compare: bool = True    # part of the default `make compare` set
    also_builds: tuple[str, ...] = ()  # services besides app_service whose images the variant needs
    app: str = "demo"          # the app served: "demo" (m2stack.demo), or another one's name
    # A variant whose app image is built FROM another variant's (a service of your own on
    # the handler image): that variant's name, built first.
    built_on: str | None = None
    # True: mongrel2 -> the dispatcher -> handlers (docs/dispatcher.md); False: no
    # dispatcher runs (the bare shape, or no Mongrel2 at all). tests/e2e/test_shapes.py
    # checks it against what Compose makes of `files`.
    dispatched: bool = False
    # A measurement overlay: mongrel2-gevent with one of mongrel2's settings turned (its
    # name); `make compare` runs it on request beside mongrel2-gevent, the e2e suites
    # leave it out (it changes no code path of ours).
    knob: str | None = None

    @property
    def scaled(self) -> bool:
        """True when more app processes mean more containers (`--scale`)."""
        return self.workers_env is None


def _mongrel2(name: str, description: str, hub: str | None, *overlays: str, bare: bool = False,
              in_compare: bool = True, also_builds: tuple[str, ...] = (), app: str = "demo",
              built_on: str | None = None, knob: str | None = None) -> Variant:
    """Behind the dispatcher (the base file's shape), or `bare`: with compose/bare.yml."""
    files = (BASE, *((BARE,) if bare else ()), *overlays)
    return Variant(name, description, files, front_door="mongrel2", hub=hub,
                   app_service="handler", target="http://mongrel2:6767", workers_env=None,
                   cpus_env="HANDLER_CPUS", in_compare=in_compare, also_builds=also_builds,
                   app=app, built_on=built_on, dispatched=not bare, knob=knob)


def _wsgi(name: str, description: str, hub: str, *overlays: str, in_compare: bool = True,
          app: str = "demo", built_on: str | None = None) -> Variant:
    return Variant(name, description, (BASE, "compose/wsgi.yml", *overlays), front_door="wsgi",
                   hub=hub, app_service="wsgi", target="http://wsgi:6767",
                   workers_env="WEB_CONCURRENCY", cpus_env="WSGI_CPUS", in_compare=in_compare,
                   app=app, built_on=built_on)


def _peer(name: str, description: str, front_door: str, hub: str, service: str) -> Variant:
    """Another server, not our front door: one container of WEB_CONCURRENCY workers."""
    return Variant(name, description, (BASE, f"compose/{name}.yml"), front_door=front_door, hub=hub,
                   app_service=service, target=f"http://{service}:6767",
                   workers_env="WEB_CONCURRENCY", cpus_env="WSGI_CPUS")


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    # The bare shape (compose/bare.yml): mongrel2 round-robins straight to the handlers.
    # The hubs' comparison, and what the dispatcher's hop costs and buys beside it.
    _mongrel2("mongrel2-gevent", "Mongrel2 + gevent handlers", "gevent", bare=True),
    _mongrel2("mongrel2-eventlet", "Mongrel2 + eventlet handlers", "eventlet", "compose/eventlet.yml", bare=True),
    # mongrel2-gevent with one of mongrel2's knobs turned: measured beside it, on request.
    _mongrel2("mongrel2-gevent-ipc", "mongrel2-gevent over ipc:// (unix sockets in a shared volume) "
              "instead of TCP between mongrel2 and the handlers", "gevent", IPC, bare=True, in_compare=False,
              knob="ipc://"),
    _mongrel2("mongrel2-gevent-zmq2", "mongrel2-gevent with 2 ZeroMQ I/O threads in mongrel2 instead of 1",
              "gevent", ZMQ_THREADS, bare=True, in_compare=False, knob="zeromq.threads"),
    _wsgi("wsgi-gevent", "Gunicorn, gevent worker", "gevent"),
    _wsgi("wsgi-eventlet", "Gunicorn, eventlet worker", "eventlet", "compose/wsgi-eventlet.yml"),
    # The default shape, the base file's (`make up`, `docker compose up`): the dispatcher
    # between mongrel2 and the handlers (docs/dispatcher.md).
    _mongrel2("mongrel2-gevent-dispatch", "Mongrel2 + the dispatcher + gevent handlers", "gevent"),
    _mongrel2("mongrel2-eventlet-dispatch", "Mongrel2 + the dispatcher + eventlet handlers", "eventlet",
              "compose/eventlet.yml", in_compare=False),
    # The ceiling handler pulls from mongrel2 itself: it speaks no dispatcher protocol.
    _mongrel2("ceiling", "mongrel2's own bound: a blocking pyzmq handler, no hub, no app, pre-rendered replies", None,
              "compose/ceiling.yml", bare=True),
    # Peers (services/peers/): the same scenarios and CPU limits, our per-request work.
    # Which is the fair peer for the scenarios that wait (sleep, fanout, the database): the
    # ones waiting cooperatively, as our greenlets do: uvicorn-starlette and
    # granian-starlette, one app on one lock, only the server differs. wsgi-granian is our
    # own app under granian, waiting in threads: sized to the load (1,000 threads a
    # worker, the WSGI variants' WORKER_CONNECTIONS) it serves every scenario, at the
    # price of a thread per wait and GETs one after another on /fanout (docs/benchmarks.md).
    _peer("wsgi-granian", "granian (Rust HTTP server) serving our WSGI app on the blocking hub, "
          "a thread per request", "wsgi", "blocking", "granian"),
    _peer("uvicorn-starlette", "uvicorn + uvloop + httptools, a Starlette + asyncpg app",
          "asgi", "uvloop", "uvicorn"),
    _peer("granian-starlette", "granian (ASGI, uvloop) serving uvicorn-starlette's Starlette + asyncpg app",
          "asgi", "uvloop", "granian"),
    # An app of your own behind Mongrel2; it has only some of the demo's endpoints. These
    # and the notes example run the stack's default shape, behind the dispatcher.
    _mongrel2("example-flask", "Mongrel2 + a Flask app on gevent handlers", "gevent",
              "compose/example-flask.yml", in_compare=False, app="flask"),
    # A service of your own (examples/notes/): its image is the handler or WSGI image plus
    # its package, its overlays name that image; both doors, both hubs.
    _mongrel2("notes-mongrel2-gevent", "Mongrel2 + the notes example on gevent handlers", "gevent",
              "examples/notes/compose.yml", in_compare=False, app="notes", built_on="mongrel2-gevent-dispatch"),
    _mongrel2("notes-mongrel2-eventlet", "Mongrel2 + the notes example on eventlet handlers", "eventlet",
              "examples/notes/compose.yml", "examples/notes/compose.eventlet.yml", in_compare=False,
              app="notes", built_on="mongrel2-eventlet-dispatch"),
    _wsgi("notes-wsgi-gevent", "Gunicorn (gevent worker) serving the notes example", "gevent",
          "examples/notes/compose.wsgi.yml", in_compare=False, app="notes", built_on="wsgi-gevent"),
    _wsgi("notes-wsgi-eventlet", "Gunicorn (eventlet worker) serving the notes example", "eventlet",
          "examples/notes/compose.wsgi.yml", "examples/notes/compose.wsgi-eventlet.yml", in_compare=False,
          app="notes", built_on="wsgi-eventlet"),
)}


def file_args(variant: Variant) -> str:
    return " ".join(f"-f {file}" for file in variant.files)


def image_builds() -> list[str]:
    """Compose arguments that together build every image of every variant.

    The base file's services all at once (db, mongrel2, the dispatcher, the default
    handler), then each overlay's app service, built with its own files so their build
    arguments apply.
    """
    builds = [f"-f {BASE} build"]
    for v in VARIANTS.values():
        files = tuple(file for file in v.files if file not in NO_IMAGE)
        line = f"{' '.join(f'-f {file}' for file in files)} build {' '.join((v.app_service, *v.also_builds))}"
        if files != (BASE,) and line not in builds:
            builds.append(line)
    return builds


def prebuild_args(variant: Variant) -> str:
    """Compose arguments building the image `variant`'s own Dockerfile starts FROM ("": none)."""
    if variant.built_on is None:
        return ""
    base = VARIANTS[variant.built_on]
    return f"{file_args(base)} build {base.app_service}"


def _variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant: {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "files" and len(args) == 1:
        print(file_args(_variant(args[0])))
    elif command == "names" and not args:
        print("\n".join(VARIANTS))
    elif command == "images" and not args:
        print("\n".join(image_builds()))
    elif command == "scale" and len(args) == 2:
        variant = _variant(args[0])
        if variant.scaled:
            print(f"--scale {variant.app_service}={args[1]}")
    elif command == "prebuild" and len(args) == 1:
        print(prebuild_args(_variant(args[0])))
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
