"""GET /fanout?n=K: K concurrent HTTP GETs to a server in the stack, and a summary.

Outbound HTTP is the standard library's http.client: its sockets (and DNS) are
monkey-patched by the hub, so each GET parks only its own greenlet. The K GETs run in K
greenlets (`map_concurrently` of the hub the app was built on). Targets are settings, never taken from
the request (no server-side request forgery):

  FANOUT_URL        default http://mongrel2:6767/static/sample.json  (mongrel2's Dir route)
  FANOUT_SLOW_URL   default http://mongrel2:6767/sleep?ms={ms}       (used when delay_ms > 0)
  FANOUT_TIMEOUT    seconds per GET, default 5

`delay_ms` makes each GET take that long on the far side (through mongrel2 to /sleep,
possibly on this very handler): the test that K slow GETs overlap.
"""

from __future__ import annotations

import http.client
import time
from collections import Counter
from urllib.parse import urlsplit

from m2stack.app import Endpoint, HTTPError, Response, Router
from m2stack.hubs import AppHub
from m2stack.settings import FanoutSettings

MAX_FANOUT = 100
MAX_DELAY_MS = 2_000

routes = Router()


def fetch(url: str, timeout: float) -> dict:
    """One GET: status, size and time, or the error's type. Never raises."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return {"error": "UnsupportedURL", "ms": 0.0}
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", target, headers={"User-Agent": "m2stack-fanout", "Connection": "close"})
        response = conn.getresponse()
        size = len(response.read())
        result = {"status": response.status, "bytes": size}
    except (OSError, http.client.HTTPException) as exc:
        result = {"error": type(exc).__name__}
    finally:
        conn.close()
    result["ms"] = (time.monotonic() - started) * 1000
    return result


def summarise(url: str, results: list[dict], elapsed: float) -> dict:
    statuses = Counter(str(r["status"]) for r in results if "status" in r)
    errors = Counter(r["error"] for r in results if "error" in r)
    ok = sum(1 for r in results if 200 <= r.get("status", 0) < 300)
    return {"n": len(results), "url": url, "ok": ok, "failed": len(results) - ok,
            "statuses": dict(statuses), "errors": dict(errors),
            "bytes": sum(r.get("bytes", 0) for r in results),
            "elapsed_ms": round(elapsed * 1000, 1),
            "slowest_ms": round(max(r["ms"] for r in results), 1),
            "sum_of_request_ms": round(sum(r["ms"] for r in results), 1)}


class Client:
    """The fan-out of one process: its targets and the hub that runs GETs side by side."""

    def __init__(self, settings: FanoutSettings, hub: AppHub):
        self.settings = settings
        self.hub = hub

    def get_all(self, url: str, n: int) -> list[dict]:
        timeout = self.settings.timeout
        return self.hub.map_concurrently(lambda target: fetch(target, timeout), [url] * n)


@routes.route("/fanout")
class Fanout(Endpoint):
    """200 with the summary when every GET got a 2xx; 502 with the same summary otherwise."""

    def get(self) -> Response:
        n = self.request.int_argument("n", 10, minimum=1, maximum=MAX_FANOUT)
        delay = self.request.int_argument("delay_ms", 0, minimum=0, maximum=MAX_DELAY_MS)
        client: Client = self.app.state.fanout
        url = client.settings.slow_url.format(ms=delay) if delay else client.settings.url
        started = time.monotonic()
        results = client.get_all(url, n)
        summary = summarise(url, results, time.monotonic() - started)
        if summary["failed"]:
            raise HTTPError(502, "some fan-out requests failed", details=summary)
        return self.json(summary)
