"""Entry point of the dispatcher image. Its healthcheck (services/Dockerfile) reads the age
of the heartbeat file the loop writes every second."""

from __future__ import annotations

import sys

from m2stack import logs
from m2stack.dispatch import service
from m2stack.scheduling import batch_scheduling
from m2stack.settings import DispatcherSettings, load


def main() -> int:
    settings = load(DispatcherSettings)
    logs.setup(settings.log_level)
    if settings.batch_scheduling:
        batch_scheduling()
    return service.serve(settings)


if __name__ == "__main__":
    sys.exit(main())
