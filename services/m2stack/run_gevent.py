"""Entry point of the gevent handler image: patch first, then import anything else."""

from gevent import monkey

monkey.patch_all()

from m2stack import launch  # noqa: E402
from m2stack.hubs import gevent_hub  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(launch.mongrel2_handler(gevent_hub.HUB))
