"""The variants: the one table that `make compare`, the e2e tests and the Makefile read.

A variant is the app behind one front door on one hub, described by the compose files
that bring it up (relative to the repository root). Standard library only, so it runs
as a script too (the Makefile's view of the table):

    python3 loadtest/comparison/variants.py files wsgi-eventlet   -f docker-compose.yml -f ...
    python3 loadtest/comparison/variants.py names                 every name, one a line
    python3 loadtest/comparison/variants.py images                compose arguments, one build a line
    python3 loadtest/comparison/variants.py scale NAME N          --scale handler=N, or nothing
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

BASE = "docker-compose.yml"


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

    @property
    def scaled(self) -> bool:
        """True when more app processes mean more containers (`--scale`)."""
        return self.workers_env is None


def _mongrel2(name: str, description: str, hub: str | None, *overlays: str,
              in_compare: bool = True, also_builds: tuple[str, ...] = ()) -> Variant:
    return Variant(name, description, (BASE, *overlays), front_door="mongrel2", hub=hub,
                   app_service="handler", target="http://mongrel2:6767", workers_env=None,
                   cpus_env="HANDLER_CPUS", in_compare=in_compare, also_builds=also_builds)


def _wsgi(name: str, description: str, hub: str, *overlays: str) -> Variant:
    return Variant(name, description, (BASE, "compose/wsgi.yml", *overlays), front_door="wsgi",
                   hub=hub, app_service="wsgi", target="http://wsgi:6767",
                   workers_env="WEB_CONCURRENCY", cpus_env="WSGI_CPUS")


def _peer(name: str, description: str, front_door: str, hub: str, service: str) -> Variant:
    """Another server, not our front door: one container of WEB_CONCURRENCY workers."""
    return Variant(name, description, (BASE, f"compose/{name}.yml"), front_door=front_door, hub=hub,
                   app_service=service, target=f"http://{service}:6767",
                   workers_env="WEB_CONCURRENCY", cpus_env="WSGI_CPUS")


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    _mongrel2("mongrel2-gevent", "Mongrel2 + gevent handlers", "gevent"),
    _mongrel2("mongrel2-eventlet", "Mongrel2 + eventlet handlers", "eventlet", "compose/eventlet.yml"),
    _wsgi("wsgi-gevent", "Gunicorn, gevent worker", "gevent"),
    _wsgi("wsgi-eventlet", "Gunicorn, eventlet worker", "eventlet", "compose/wsgi-eventlet.yml"),
    # The dispatcher between mongrel2 and the handlers (docs/dispatcher.md): what the extra
    # hop costs per request, beside mongrel2-gevent.
    _mongrel2("mongrel2-gevent-dispatch", "Mongrel2 + the dispatcher + gevent handlers", "gevent",
              "compose/dispatch.yml", also_builds=("dispatcher",)),
    _mongrel2("mongrel2-eventlet-dispatch", "Mongrel2 + the dispatcher + eventlet handlers", "eventlet",
              "compose/eventlet.yml", "compose/dispatch.yml", in_compare=False, also_builds=("dispatcher",)),
    _mongrel2("ceiling", "Mongrel2 + the ceiling handler (blocking pyzmq, no hub, no app)", None,
              "compose/ceiling.yml"),
    # Peers (services/peers/): the same scenarios and CPU limits, our per-request work.
    _peer("wsgi-granian", "granian (Rust HTTP server) serving our WSGI app on the blocking hub, "
          "a thread per request", "wsgi", "blocking", "granian"),
    _peer("uvicorn-starlette", "uvicorn + uvloop + httptools, a Starlette + asyncpg app",
          "asgi", "uvloop", "uvicorn"),
    # An app of your own behind Mongrel2; it has only some of the demo's endpoints.
    _mongrel2("example-flask", "Mongrel2 + a Flask app on gevent handlers", "gevent",
              "compose/example-flask.yml", in_compare=False),
)}


def file_args(variant: Variant) -> str:
    return " ".join(f"-f {file}" for file in variant.files)


def image_builds() -> list[str]:
    """Compose arguments that together build every image of every variant.

    The base file's services all at once (db, mongrel2, the default handler), then each
    overlay's app service, built with its own files so their build arguments apply.
    """
    builds = [f"-f {BASE} build"]
    builds += [f"{file_args(v)} build {' '.join((v.app_service, *v.also_builds))}"
               for v in VARIANTS.values() if v.files != (BASE,)]
    return builds


def _variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant: {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def main(argv: list[str]) -> int:
    match argv:
        case ["files", name]:
            print(file_args(_variant(name)))
        case ["names"]:
            print("\n".join(VARIANTS))
        case ["images"]:
            print("\n".join(image_builds()))
        case ["scale", name, count]:
            variant = _variant(name)
            if variant.scaled:
                print(f"--scale {variant.app_service}={count}")
        case _:
            print(__doc__.strip(), file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
