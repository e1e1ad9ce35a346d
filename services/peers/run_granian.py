"""Entry point of the wsgi-granian image: granian (WSGI mode) serving our own app.

    python3 -m peers.run_granian

Environment: PORT (6767), WEB_CONCURRENCY (worker processes; default one per usable
CPU), GRANIAN_THREADS (Python threads per worker that run the app, default 4), ACCESS_LOG
(false), LOG_LEVEL (INFO), METRICS_PORT (9100).

Threads: the blocking hub serves one request per thread, so the threads are the number
of requests in progress at once; requests beyond them wait inside granian (its
backpressure stays at the default), not in Python. Under the GIL one thread runs Python
at a time, so threads only pay where requests wait (the database, /sleep); past a few,
runnable threads just contend for the GIL. Measured here (wrk, 64 connections, 1 CPU):
4 threads 7,200 plaintext req/s at 122 CPU-us each, 20 threads 5,700 at 163 us; /db the
same with both (~2,400 req/s, the database's CPU is the limit). Gunicorn's rule of thumb
for threaded workers is 2-4 threads per core, so 4 it is. /sleep?ms=1000 then serves 4
requests/s per worker, whatever the load: the price of waiting in a thread.
"""

from __future__ import annotations

import os

from peers.common import env_int, prepare_metrics, worker_count


def main() -> None:
    workers = worker_count()
    threads = env_int("GRANIAN_THREADS", 4)
    prepare_metrics(workers)
    access_log = os.environ.get("ACCESS_LOG", "false").strip().lower() in ("1", "true", "yes", "on")
    args = ["granian", "--interface", "wsgi", "--host", "0.0.0.0",
            "--port", str(env_int("PORT", 6767)), "--http", "1", "--no-ws",
            "--workers", str(workers), "--blocking-threads", str(threads),
            "--log-level", os.environ.get("LOG_LEVEL", "INFO").strip().lower() or "info",
            "--access-log" if access_log else "--no-access-log",
            "--respawn-failed-workers",
            "peers.granian_app:application"]
    os.execvp(args[0], args)  # granian becomes the container's main process


if __name__ == "__main__":
    main()
