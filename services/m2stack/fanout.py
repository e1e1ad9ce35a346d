"""GET /fanout?n=K: K concurrent HTTP GETs to a server in the stack, and a summary.

Outbound HTTP is the standard library's http.client: its sockets (and DNS) are
monkey-patched by the hub, so each GET parks only its own greenlet. The K GETs run in K
greenlets (`map_concurrently` of the hub adapter). Targets are settings, never taken from
the request (no server-side request forgery):

  FANOUT_URL        default http://mongrel2:6767/static/sample.json  (mongrel2's Dir route)
  FANOUT_SLOW_URL   default http://mongrel2:6767/sleep?ms={ms}       (used when delay_ms > 0)
  FANOUT_TIMEOUT    seconds per GET, default 5

`delay_ms` makes each GET take that long on the far side (through mongrel2 to /sleep,
possibly on this very handler): the test that K slow GETs overlap.
"""

from __future__ import annotations

import http.client
import os
import time
from collections import Counter
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from .app import App, Handler, HTTPError, Response
from .hubs import load as load_hub
from .settings import env_number

MAX_FANOUT = 100
MAX_DELAY_MS = 2_000

routes = App()


@dataclass(frozen=True)
class FanoutSettings:
    url: str
    slow_url: str
    timeout: float

    @classmethod
    def from_env(cls) -> "FanoutSettings":
        return cls(url=os.environ.get("FANOUT_URL", "http://mongrel2:6767/static/sample.json"),
                   slow_url=os.environ.get("FANOUT_SLOW_URL", "http://mongrel2:6767/sleep?ms={ms}"),
                   timeout=env_number("FANOUT_TIMEOUT", 5.0, float))


@cache
def settings() -> FanoutSettings:
    return FanoutSettings.from_env()


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


@routes.route("/fanout")
class Fanout(Handler):
    """200 with the summary when every GET got a 2xx; 502 with the same summary otherwise."""

    def get(self) -> Response:
        n = self.request.int_argument("n", 10, minimum=1, maximum=MAX_FANOUT)
        delay = self.request.int_argument("delay_ms", 0, minimum=0, maximum=MAX_DELAY_MS)
        config = settings()
        url = config.slow_url.format(ms=delay) if delay else config.url
        started = time.monotonic()
        results = load_hub(self.app.hub).map_concurrently(lambda u: fetch(u, config.timeout), [url] * n)
        summary = summarise(url, results, time.monotonic() - started)
        if summary["failed"]:
            raise HTTPError(502, "some fan-out requests failed", details=summary)
        return self.json(summary)
