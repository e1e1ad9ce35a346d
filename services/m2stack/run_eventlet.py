"""Entry point of the eventlet handler image: patch first, then import anything else."""

import eventlet

eventlet.monkey_patch()

from m2stack import launch  # noqa: E402
from m2stack.hubs import eventlet_hub  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(launch.mongrel2_handler(eventlet_hub.HUB))
