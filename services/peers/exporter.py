"""The merged Prometheus metrics of every worker process (multiprocess mode).

Started by a peer launcher (common.prepare_metrics) just before it becomes the server's
main process; exits when that process does.
"""

from __future__ import annotations

import os
import sys
import time

from prometheus_client import CollectorRegistry, multiprocess, start_http_server


def main() -> int:
    port = int(sys.argv[1])
    parent = os.getppid()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
    while os.getppid() == parent:
        time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
