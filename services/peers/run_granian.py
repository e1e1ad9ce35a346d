"""Entry point of the granian peers: granian serving our WSGI app, or the peers' ASGI app.

    python3 -m peers.run_granian

Environment: GRANIAN_INTERFACE (wsgi, the default: m2stack's own WSGI app through
granian_app.py; asgi: starlette_app.py, the app uvicorn-starlette serves, on uvloop),
PORT (6767), WEB_CONCURRENCY (worker processes; default one per usable CPU),
GRANIAN_THREADS (WSGI only: Python threads per worker that run the app, default 1000),
ACCESS_LOG (false), LOG_LEVEL (INFO), METRICS_PORT (9100).

WSGI threads. Under granian nothing patches the process, so the app runs on the blocking
hub: one request per thread, and a request that waits (/sleep, the database, /fanout's
GETs) holds its thread for the whole wait. The threads are therefore the requests in
progress at once, and they must cover what the load keeps in flight, or requests queue
inside granian behind waits that hold every thread: with the 4 threads this peer once had,
/sleep?ms=1000 at 1,000 users served 4 requests a second, every client timed out, and the
queue left behind (granian runs a request whose client has gone) kept /db and /queries
waiting for minutes after; /fanout, whose GETs come back to this same server, deadlocked
once every thread was a fan-out waiting for a thread. 1,000 is the cap the Gunicorn
variants run with (WORKER_CONNECTIONS) and the most users any Locust scenario drives.
granian starts threads as requests need them and lets idle ones go
(--blocking-threads-idle-timeout), so a load with few requests in flight runs few threads;
a load with many pays for them in GIL handovers, the price of waiting in threads. Two
costs stay that no thread count removes: the blocking hub has no deadline (no 504), and
its map_concurrently runs /fanout's GETs one after another, not side by side.

ASGI: one event loop per worker runs every request (granian's blocking threads must be 1
there), the same app, library versions and settings as uvicorn-starlette: only the server
differs.
"""

from __future__ import annotations

import os

from peers.common import env_int, prepare_metrics, worker_count

APPS = {"wsgi": "peers.granian_app:application", "asgi": "peers.starlette_app:application"}


def main() -> None:
    interface = os.environ.get("GRANIAN_INTERFACE", "").strip().lower() or "wsgi"
    if interface not in APPS:
        raise SystemExit(f"GRANIAN_INTERFACE={interface!r}: wsgi or asgi")
    workers = worker_count()
    prepare_metrics(workers)
    access_log = os.environ.get("ACCESS_LOG", "false").strip().lower() in ("1", "true", "yes", "on")
    args = ["granian", "--interface", interface, "--host", "0.0.0.0",
            "--port", str(env_int("PORT", 6767)), "--http", "1", "--no-ws",
            "--workers", str(workers),
            "--log-level", os.environ.get("LOG_LEVEL", "INFO").strip().lower() or "info",
            "--access-log" if access_log else "--no-access-log",
            "--respawn-failed-workers"]
    if interface == "wsgi":
        args += ["--blocking-threads", str(env_int("GRANIAN_THREADS", 1000))]
    else:  # as run_uvicorn.py: uvloop, and the app's lifespan (its database pool)
        args += ["--loop", "uvloop"]
    args.append(APPS[interface])
    os.execvp(args[0], args)  # granian becomes the container's main process


if __name__ == "__main__":
    main()
