"""Entry point of the dispatcher image; `run_dispatcher healthcheck` is its healthcheck
(healthy while the loop's heartbeat file is fresh)."""

from __future__ import annotations

import os
import sys
import time

from m2stack import logs
from m2stack.dispatch import service
from m2stack.scheduling import batch_scheduling
from m2stack.settings import DispatcherSettings, load


def healthcheck(settings: DispatcherSettings) -> int:
    try:
        age = time.time() - os.stat(settings.heartbeat_file).st_mtime
    except FileNotFoundError:
        print("no heartbeat yet")
        return 1
    if age > 5:
        print(f"heartbeat is {age:.1f}s old: the loop is stuck")
        return 1
    return 0


def main(argv: list[str]) -> int:
    settings = load(DispatcherSettings)
    if argv[1:] == ["healthcheck"]:
        return healthcheck(settings)
    logs.setup(settings.log_level)
    if settings.batch_scheduling:
        batch_scheduling()
    return service.serve(settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
