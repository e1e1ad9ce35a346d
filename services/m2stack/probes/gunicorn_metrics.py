"""Serve the Prometheus metrics of every Gunicorn worker, merged (multiprocess mode).

Started by the Gunicorn master (gunicorn.conf.py) as a plain child process: the
master may have imported a hub, so a thread there cannot be trusted to run. It
exits when its parent does.
"""

import os
import sys
import time

from prometheus_client import CollectorRegistry, multiprocess, start_http_server


def main() -> int:
    port = int(sys.argv[1])
    parent = os.getppid()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, registry=registry)
    while os.getppid() == parent:
        time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
