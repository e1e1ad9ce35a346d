"""Container healthcheck of the WSGI images: GET /healthz on loopback must answer 200.

Python's urllib, so the image needs no curl; proxies from the environment are ignored.
"""

import os
import sys
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '6767')}/healthz"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
