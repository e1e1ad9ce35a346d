"""Container healthcheck of a Mongrel2 handler: healthy while the loop's heartbeat is fresh.

The heartbeat is written by a greenlet on the hub, and only after mongrel2 has
subscribed, so a fresh file means: connected, and the hub is not blocked.
"""

import os
import sys
import time

from m2stack.settings import HandlerSettings, load


def main() -> int:
    settings = load(HandlerSettings)
    try:
        age = time.time() - os.stat(settings.heartbeat_file).st_mtime
    except FileNotFoundError:
        print("no heartbeat yet (not connected to mongrel2?)")
        return 1
    limit = settings.heartbeat_interval * 3 + 1
    if age > limit:
        print(f"heartbeat is {age:.1f}s old (limit {limit:.1f}s): hub blocked or loop dead")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
