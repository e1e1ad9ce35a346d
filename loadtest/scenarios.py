"""The load-test workloads, as data: one table that the Locust file and `compare.py` share.

A scenario is a weighted list of requests; each request says what a correct answer
looks like (status codes and a cheap body check), so a wrong answer is a failure and
not throughput. Edit this file to change what is measured; nothing else needs to know.

Standard library only: it is imported by the Locust image and by the host-side
comparison script alike.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


SLEEP_MS = _env_int("SLEEP_MS", 1000)    # /sleep: each request waits this long (the I/O wait)
QUERIES = _env_int("QUERIES", 20)        # /queries and /updates: rows per request
FANOUT = _env_int("FANOUT", 10)          # /fanout: outbound requests per request
OPEN_RATE = _env_int("OPEN_RATE", 2000)  # open-json: requests/s asked for, whatever the answers

# POST /items: a body the app accepts, and ones it must refuse with a given 4xx.
# (the ItemIn Struct of services/m2stack/items.py)
ITEM_VALID = os.environ.get("ITEM_JSON") or json.dumps(
    {"name": "load-test item", "price_cents": 950, "owner_email": "load@example.com",
     "tags": ["locust"]})
ITEM_INVALID_FIELDS = json.dumps({"name": "", "price_cents": -1, "owner_email": "nobody"})
ITEM_MALFORMED = '{"name": "unterminated'
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Request:
    name: str                         # the row name in Locust's statistics
    path: str
    method: str = "GET"
    expect: tuple[int, ...] = (200,)  # any other status is a failure
    contains: bytes | None = None     # the body must contain this (cheap check), if set
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    weight: int = 1


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    requests: tuple[Request, ...]
    generator: str = "locust"         # "locust"; "wrk" for raw request-rate ceilings; "openloop"
                                      # for latency at a fixed arrival rate (loadtest/openloop.py)
    users: int | None = None          # default concurrency for this scenario (else USERS)


PLAINTEXT = Request("GET /plaintext", "/plaintext", contains=b"Hello, World!")
JSON = Request("GET /json", "/json", contains=b"Hello, World!")
SLEEP = Request("GET /sleep", f"/sleep?ms={SLEEP_MS}", contains=b"slept_ms")
DB = Request("GET /db", "/db", contains=b"randomNumber")
QUERIES_REQ = Request(f"GET /queries?queries={QUERIES}", f"/queries?queries={QUERIES}",
                      contains=b"randomNumber")
FORTUNES = Request("GET /fortunes", "/fortunes", contains=b"<table")
UPDATES = Request(f"GET /updates?queries={QUERIES}", f"/updates?queries={QUERIES}",
                  contains=b"randomNumber")
FANOUT_REQ = Request(f"GET /fanout?n={FANOUT}", f"/fanout?n={FANOUT}", contains=b'"failed":0')
VALIDATION = (
    Request("POST /items (valid)", "/items", "POST", (201,), b'"id"', ITEM_VALID,
            JSON_HEADERS, weight=4),
    Request("POST /items (invalid fields: 422)", "/items", "POST", (422,), b'"error"',
            ITEM_INVALID_FIELDS, JSON_HEADERS, weight=2),
    Request("POST /items (malformed JSON: 400)", "/items", "POST", (400,), b'"error"',
            ITEM_MALFORMED, JSON_HEADERS),
    Request("POST /items (wrong type: 415)", "/items", "POST", (415,), b'"error"',
            ITEM_VALID, {"Content-Type": "text/plain"}),
)


def _weighted(requests: tuple[Request, ...], weight: int) -> tuple[Request, ...]:
    return tuple(Request(r.name, r.path, r.method, r.expect, r.contains, r.body, r.headers,
                         r.weight * weight) for r in requests)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("plaintext", "GET /plaintext: the smallest response, the hub's overhead", (PLAINTEXT,)),
    Scenario("json", "GET /json: one small JSON encode per request", (JSON,)),
    Scenario("sleep", f"GET /sleep?ms={SLEEP_MS}: a cooperative wait, many requests in flight",
             (SLEEP,), users=1000),
    Scenario("db", "GET /db: one random row from PostgreSQL", (DB,)),
    Scenario("queries", f"GET /queries?queries={QUERIES}: {QUERIES} queries per request", (QUERIES_REQ,)),
    Scenario("fortunes", "GET /fortunes: query, sort, HTML template", (FORTUNES,)),
    Scenario("updates", f"GET /updates?queries={QUERIES}: {QUERIES} reads and writes per request",
             (UPDATES,)),
    Scenario("fanout", f"GET /fanout?n={FANOUT}: {FANOUT} concurrent outbound HTTP requests",
             (FANOUT_REQ,)),
    Scenario("validation", "POST /items: valid bodies (201) and invalid ones that must get "
             "their 4xx (422, 400, 415)", VALIDATION),
    Scenario("mixed", "a weighted mix of every workload above",
             (*_weighted((PLAINTEXT, JSON), 10), *_weighted((SLEEP,), 2),
              *_weighted((DB, QUERIES_REQ, FORTUNES), 4), UPDATES, FANOUT_REQ, *VALIDATION)),
    Scenario("wrk-plaintext", "wrk, GET /plaintext: raw request rate (no body check)",
             (PLAINTEXT,), generator="wrk"),
    Scenario("wrk-json", "wrk, GET /json: raw request rate (no body check)", (JSON,),
             generator="wrk"),
    Scenario("wrk-db", "wrk, GET /db: one PostgreSQL read per request at the request rate wrk "
             "drives (non-2xx count as errors; no body check)", (DB,), generator="wrk"),
    # The I/O workloads at the rate wrk drives, as TechEmpower measures them: Locust's one
    # worker is the limit before most servers are on the fast ones (its cells flagged).
    Scenario("wrk-queries", f"wrk, GET /queries?queries={QUERIES}: {QUERIES} PostgreSQL reads per request "
             "(non-2xx count as errors; no body check)", (QUERIES_REQ,), generator="wrk"),
    Scenario("wrk-fortunes", "wrk, GET /fortunes: query, sort, HTML template (non-2xx count as errors; "
             "no body check)", (FORTUNES,), generator="wrk"),
    Scenario("wrk-updates", f"wrk, GET /updates?queries={QUERIES}: {QUERIES} reads and writes per request "
             "(non-2xx count as errors; no body check)", (UPDATES,), generator="wrk"),
    Scenario("wrk-fanout", f"wrk, GET /fanout?n={FANOUT}: {FANOUT} concurrent outbound HTTP requests per "
             "request (non-2xx count as errors; no body check)", (FANOUT_REQ,), generator="wrk"),
    Scenario("open-json", f"GET /json at a fixed {OPEN_RATE:,} requests/s (open loop, at most 64 "
             "connections): latency from when each request was due, so a stall is counted as users "
             "see it (wrk2's correction for coordinated omission); compare the p99, not the rate",
             (JSON,), users=64, generator="openloop"),
    Scenario("wrk-sleep", f"wrk, GET /sleep?ms={SLEEP_MS} on 5,000 connections: requests held "
             "in flight at once (Locust cannot drive that many users here)", (SLEEP,),
             users=5000, generator="wrk"),
)}


def probes(scenario: Scenario) -> list[Request]:
    """One request per distinct endpoint: what to try before running a scenario on a variant."""
    seen, out = set(), []
    for request in scenario.requests:
        key = (request.method, request.path.split("?", 1)[0])
        if key not in seen:
            seen.add(key)
            # The variant's answer to the first (valid) request of each endpoint decides.
            out.append(request)
    return out
