"""Entry point of the wsgi-granian image: granian (WSGI mode) serving our own app.

    python3 -m peers.run_granian

Environment: PORT (6767), WEB_CONCURRENCY (worker processes; default one per usable
CPU), GRANIAN_THREADS (Python threads per worker that run the app, default DB_POOL_SIZE:
the blocking hub serves one request per thread, and so each thread can hold a database
connection without queueing on the pool), ACCESS_LOG (false), LOG_LEVEL (INFO),
METRICS_PORT (9100). Requests beyond the threads wait inside granian (its backpressure
stays at the default), not in Python.
"""

from __future__ import annotations

import os

from peers.common import env_int, prepare_metrics, worker_count


def main() -> None:
    workers = worker_count()
    threads = env_int("GRANIAN_THREADS", 0) or env_int("DB_POOL_SIZE", 20)
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
