"""The uvicorn peer's app: the demo endpoints the comparison measures, on Starlette + asyncpg.

    /plaintext /json /sleep /healthz          (m2stack/demo/basics.py)
    /db /queries /fortunes /updates           (m2stack/demo/world.py: the same SQL and
                                               TechEmpower rules, on the same database)
    /fanout                                   (m2stack/demo/fanout.py: K concurrent GETs,
                                               the same settings, summary and 502)

Like for like, every request does the per-request work of m2stack's App: a request id
(a well-formed X-Request-Id kept, else minted), the response headers X-Request-Id,
X-Handler-Id, X-Hub, X-Front-Door, the same Prometheus metrics (names, labels, buckets),
a deadline (HANDLER_REQUEST_TIMEOUT, then 504) and errors as the same JSON body. Written
as a plain ASGI middleware, the cheap way Starlette's documentation recommends.
Settings: the DB_* and FANOUT_* variables of m2stack/settings.py (same names; FANOUT_URL
has no default that fits a peer, whose compose file names its own /json).
Served by uvicorn (run_uvicorn.py) and by granian in ASGI mode (run_granian.py): one app.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import socket
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from html import escape
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import uvloop
from prometheus_client import Counter, Gauge, Histogram
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from peers.common import serve_metrics_in_worker

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


HUB = "uvloop"          # X-Hub: what schedules the requests here is uvloop's event loop
FRONT_DOOR = "asgi"     # X-Front-Door
HANDLER_ID = f"{socket.gethostname()}:{os.getpid()}"
REQUEST_TIMEOUT = float(_env("HANDLER_REQUEST_TIMEOUT", "10"))  # seconds, 0: none

# ---- the metrics of m2stack/metrics.py, the same names, labels and buckets --------------

REQUESTS = Counter("m2stack_requests_total", "Requests answered, by route and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("m2stack_request_duration_seconds", "Time in the app per request, by route.",
                    ["route"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
IN_FLIGHT = Gauge("m2stack_in_flight_requests", "Requests being handled (one task each).",
                  multiprocess_mode="livesum")
LOOP_LAG = Gauge("m2stack_event_loop_lag_seconds",
                 "How late the event loop woke a task that asked to sleep (last reading).",
                 multiprocess_mode="max")
HUB_INFO = Gauge("m2stack_hub_info", "The hub and front door of this process (value 1).",
                 ["hub", "front_door", "version"], multiprocess_mode="max")
SUPPORTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Labelled children looked up once per label set, as m2stack.metrics does.
_counters: dict[tuple[str, str, int], Any] = {}
_histograms: dict[str, Any] = {}


def observe(route: str, method: str, status: int, started: float) -> None:
    key = (route, method, status)
    counter = _counters.get(key)
    if counter is None:
        counter = _counters[key] = REQUESTS.labels(route, method, str(status))
    counter.inc()
    histogram = _histograms.get(route)
    if histogram is None:
        histogram = _histograms[route] = LATENCY.labels(route)
    histogram.observe(time.perf_counter() - started)


# ---- errors: m2stack's JSON error body ---------------------------------------------------

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}\Z")


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """A well-formed X-Request-Id from the client or a proxy, else a new one."""
    for name, value in headers:
        if name == b"x-request-id":
            if _REQUEST_ID.match(value):
                return value.decode("ascii")
            break
    return secrets.token_hex(8)


def error(status: int, message: str, rid: str, details: Any = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body, "request_id": rid}, status, headers=headers)


class Refused(HTTPException):
    """An HTTP error with m2stack's details (the JSON body's `details`)."""

    def __init__(self, status: int, message: str, details: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(status, message, headers)
        self.details = details


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "no route for this path"}.get(exc.status_code, exc.detail)
    details = getattr(exc, "details", None)
    if exc.status_code == 404 and details is None:
        details = {"path": request.url.path[:200]}
    return error(exc.status_code, message, request.scope["request_id"], details, exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    return error(500, "internal server error", request.scope.get("request_id", ""))


# ---- the per-request work of m2stack's App.handle/finish ---------------------------------

class PerRequest:
    """Request id, the four response headers, metrics and the deadline, around every request."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.fixed = [(b"x-handler-id", HANDLER_ID.encode()), (b"x-hub", HUB.encode()),
                      (b"x-front-door", FRONT_DOOR.encode())]

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = scope["request_id"] = request_id(scope["headers"])
        extra = [(b"x-request-id", rid.encode("ascii")), *self.fixed]
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        IN_FLIGHT.inc()
        try:
            if REQUEST_TIMEOUT:
                async with asyncio.timeout(REQUEST_TIMEOUT) as deadline:
                    await self.app(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except TimeoutError:
            if not REQUEST_TIMEOUT or not deadline.expired() or status:
                raise
            timed_out = error(504, "the handler did not finish in time", rid,
                              {"timeout_seconds": REQUEST_TIMEOUT})
            await timed_out(scope, receive, send_with_headers)
        finally:  # also when Starlette re-raises after its 500 (uvicorn logs the traceback)
            IN_FLIGHT.dec()
            route = scope.get("route")
            method = scope["method"]
            observe(route.path if route is not None else "unmatched",
                    method if method in SUPPORTED_METHODS else "other", status or 500, started)


# ---- the endpoints ------------------------------------------------------------------------

MAX_SLEEP_MS = 30_000
WORLD_ROWS = 10_000
MAX_QUERIES = 500
EXTRA_FORTUNE = (0, "Additional fortune added at request time.")
SELECT_WORLD = "SELECT id, randomnumber FROM world WHERE id = $1"
SELECT_FORTUNES = "SELECT id, message FROM fortune"


def int_argument(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise Refused(400, f"query argument '{name}' must be an integer",
                      {"argument": name, "value": raw[:64]}) from None
    if not minimum <= value <= maximum:
        raise Refused(400, f"query argument '{name}' must be between {minimum} and {maximum}",
                      {"argument": name, "value": value})
    return value


def queries_count(raw: str | None) -> int:
    """TechEmpower's `queries`: not an integer -> 1, then clamped to 1..500."""
    try:
        count = int(raw or "", 10)
    except ValueError:
        return 1
    return min(max(count, 1), MAX_QUERIES)


def random_id() -> int:
    return random.randint(1, WORLD_ROWS)


async def plaintext(request: Request) -> Response:
    return PlainTextResponse("Hello, World!")


async def hello_json(request: Request) -> Response:
    return JSONResponse({"message": "Hello, World!"})


async def sleep(request: Request) -> Response:
    ms = int_argument(request, "ms", 100, 0, MAX_SLEEP_MS)
    await asyncio.sleep(ms / 1000)
    return JSONResponse({"slept_ms": ms})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "hub": HUB, "handler_id": HANDLER_ID})


def unavailable(exc: BaseException) -> Refused:
    text = str(exc).strip()
    reason = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    return Refused(503, "database unavailable", {"reason": reason[:200]}, {"Retry-After": "1"})


@asynccontextmanager
async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; 503 when none comes within DB_POOL_TIMEOUT or the db fails."""
    pool: asyncpg.Pool = request.app.state.pool
    timeout = request.app.state.pool_timeout
    waited = time.monotonic()
    try:
        conn = await pool.acquire(timeout=timeout)
    except TimeoutError:
        raise Refused(503, "database pool exhausted",
                      {"pool_size": pool.get_max_size(),
                       "waited_seconds": round(time.monotonic() - waited, 3)},
                      {"Retry-After": "1"}) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise unavailable(exc) from None
    try:
        yield conn
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise unavailable(exc) from None
    finally:
        await pool.release(conn)


async def single_query(request: Request) -> Response:
    async with connection(request) as conn:
        id_, number = await conn.fetchrow(SELECT_WORLD, random_id())
    return JSONResponse({"id": id_, "randomNumber": number})


async def multiple_queries(request: Request) -> Response:
    count = queries_count(request.query_params.get("queries"))
    worlds = []
    async with connection(request) as conn:
        for _ in range(count):
            id_, number = await conn.fetchrow(SELECT_WORLD, random_id())
            worlds.append({"id": id_, "randomNumber": number})
    return JSONResponse(worlds)


def render_fortunes(rows: list[tuple[int, str]]) -> str:
    cells = "".join(f"<tr><td>{escape(str(id_))}</td><td>{escape(message)}</td></tr>"
                    for id_, message in rows)
    return ("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
            f"<tr><th>id</th><th>message</th></tr>{cells}</table></body></html>")


async def fortunes(request: Request) -> Response:
    async with connection(request) as conn:
        rows = [tuple(row) for row in await conn.fetch(SELECT_FORTUNES)]
    rows.append(EXTRA_FORTUNE)
    rows.sort(key=lambda row: row[1])
    return HTMLResponse(render_fortunes(rows))


async def updates(request: Request) -> Response:
    count = queries_count(request.query_params.get("queries"))
    async with connection(request) as conn, conn.transaction():
        ids = []
        for _ in range(count):
            row = await conn.fetchrow(SELECT_WORLD, random_id())
            ids.append(row[0])
        # One new number per distinct row, written in id order in one statement, so
        # concurrent /updates lock rows in the same order and cannot deadlock.
        numbers = {id_: random_id() for id_ in sorted(set(ids))}
        values = ", ".join(f"(${2 * i + 1}::integer, ${2 * i + 2}::integer)" for i in range(len(numbers)))
        await conn.execute(f"UPDATE world SET randomnumber = v.n FROM (VALUES {values}) AS v(id, n)"
                           " WHERE world.id = v.id", *[x for pair in numbers.items() for x in pair])
    return JSONResponse([{"id": id_, "randomNumber": numbers[id_]} for id_ in ids])


# ---- /fanout: m2stack/demo/fanout.py on asyncio ----------------------------------------
# The demo runs K blocking http.client GETs in K greenlets; here K tasks each open a
# connection with asyncio's streams and send the same request (GET, Connection: close),
# so they wait side by side on the event loop. Targets are settings, never the request's.

MAX_FANOUT = 100
MAX_DELAY_MS = 2_000
FANOUT_URL = _env("FANOUT_URL", "http://127.0.0.1:6767/json")
FANOUT_SLOW_URL = _env("FANOUT_SLOW_URL", "http://127.0.0.1:6767/sleep?ms={ms}")
FANOUT_TIMEOUT = float(_env("FANOUT_TIMEOUT", "5"))


async def _get(url: str) -> dict:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "User-Agent: m2stack-fanout\r\nConnection: close\r\n\r\n".encode("latin-1"))
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        body = await reader.read()  # Connection: close: the body ends with the stream
        return {"status": status, "bytes": len(body)}
    finally:
        writer.close()


async def fetch(url: str, timeout: float) -> dict:
    """One GET: status, size and time, or the error's type. Never raises."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return {"error": "UnsupportedURL", "ms": 0.0}
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            result = await _get(url)
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        # TimeoutError is an OSError: a GET past FANOUT_TIMEOUT, as http.client's timeout
        result = {"error": type(exc).__name__}
    result["ms"] = (time.monotonic() - started) * 1000
    return result


def summarise(url: str, results: list[dict], elapsed: float) -> dict:
    statuses = Tally(str(r["status"]) for r in results if "status" in r)
    errors = Tally(r["error"] for r in results if "error" in r)
    ok = sum(1 for r in results if 200 <= r.get("status", 0) < 300)
    return {"n": len(results), "url": url, "ok": ok, "failed": len(results) - ok,
            "statuses": dict(statuses), "errors": dict(errors),
            "bytes": sum(r.get("bytes", 0) for r in results),
            "elapsed_ms": round(elapsed * 1000, 1),
            "slowest_ms": round(max(r["ms"] for r in results), 1),
            "sum_of_request_ms": round(sum(r["ms"] for r in results), 1)}


async def fanout(request: Request) -> Response:
    """200 with the summary when every GET got a 2xx; 502 with the same summary otherwise."""
    n = int_argument(request, "n", 10, 1, MAX_FANOUT)
    delay = int_argument(request, "delay_ms", 0, 0, MAX_DELAY_MS)
    url = FANOUT_SLOW_URL.format(ms=delay) if delay else FANOUT_URL
    started = time.monotonic()
    results = await asyncio.gather(*(fetch(url, FANOUT_TIMEOUT) for _ in range(n)))
    summary = summarise(url, results, time.monotonic() - started)
    if summary["failed"]:
        raise Refused(502, "some fan-out requests failed", summary)
    return JSONResponse(summary)


# ---- the app ------------------------------------------------------------------------------

async def watch_loop_lag(interval: float = 1.0) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        LOOP_LAG.set(max(0.0, loop.time() - started - interval))


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """The pool connects lazily (min_size=0), as m2stack's does: no database, no crash."""
    app.state.pool_timeout = float(_env("DB_POOL_TIMEOUT", "2"))
    statement_timeout = _env("DB_STATEMENT_TIMEOUT_MS", "5000")
    app.state.pool = await asyncpg.create_pool(
        host=_env("DB_HOST", "db"), port=int(_env("DB_PORT", "5432")),
        database=_env("DB_NAME", "hello_world"), user=_env("DB_USER", "m2stack"),
        password=os.environ.get("DB_PASSWORD", ""), min_size=0,
        max_size=int(_env("DB_POOL_SIZE", "20")), timeout=float(_env("DB_CONNECT_TIMEOUT", "3")),
        server_settings={"statement_timeout": statement_timeout, "application_name": "m2stack-peer"})
    HUB_INFO.labels(HUB, FRONT_DOOR, uvloop.__version__).set(1)
    serve_metrics_in_worker()
    lag = asyncio.create_task(watch_loop_lag())
    try:
        yield
    finally:
        lag.cancel()
        await app.state.pool.close()


app = Starlette(
    routes=[Route("/plaintext", plaintext), Route("/json", hello_json), Route("/sleep", sleep),
            Route("/healthz", healthz), Route("/db", single_query), Route("/queries", multiple_queries),
            Route("/fortunes", fortunes), Route("/updates", updates), Route("/fanout", fanout)],
    exception_handlers={HTTPException: http_error, 500: server_error},
    lifespan=lifespan,
)
# Outermost (around Starlette's error middleware too), so even a 500 gets the headers.
application: ASGIApp = PerRequest(app)
