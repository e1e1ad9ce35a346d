"""Entry point of the uvicorn-starlette image: uvicorn on uvloop and httptools.

    python3 -m peers.run_uvicorn

Environment: PORT (6767), WEB_CONCURRENCY (worker processes; default one per usable CPU),
ACCESS_LOG (false), LOG_LEVEL (INFO), METRICS_PORT (9100), and what starlette_app.py reads.
"""

from __future__ import annotations

import os

import uvicorn

from peers.common import env_int, prepare_metrics, worker_count


def main() -> None:
    workers = worker_count()
    prepare_metrics(workers)
    uvicorn.run("peers.starlette_app:application", host="0.0.0.0", port=env_int("PORT", 6767),
                loop="uvloop", http="httptools", lifespan="on", workers=workers,
                access_log=os.environ.get("ACCESS_LOG", "false").strip().lower() in ("1", "true", "yes", "on"),
                log_level=os.environ.get("LOG_LEVEL", "INFO").strip().lower() or "info",
                timeout_graceful_shutdown=10)  # below the compose stop_grace_period


if __name__ == "__main__":
    main()
