"""The comparison's peers serve every scenario the demo serves, correctly and under load.

`make compare` turns a 404 into "n/a" and a wedged server into zeros or timeouts, which a
reader can take for a figure: a peer that could not wait answered 0 requests on /sleep and
/fanout and left its queue behind it for /db and /queries. So, for each peer of the table
(services/peers/; a stack of one app process each):

  - every endpoint of every scenario below answers as scenarios.py says a correct answer
    looks (status, the body check), with a body of the right shape;
  - requests that wait overlap: /sleep and /fanout with many requests in flight finish in
    about the time of one, not one after another, and none is lost;
  - clients that gave up leave nothing behind that delays the next scenario's requests.

The validation scenario (POST /items) is not in the list: the Starlette peers have no
/items (it is "n/a" there, by design: they carry the endpoints the I/O scenarios measure).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from comparison.variants import VARIANTS
from scenarios import SCENARIOS, probes
from stack import Stack

# The peers: other servers, not our front doors (their hubs are none of ours).
PEERS = [name for name, v in VARIANTS.items() if v.hub in ("blocking", "uvloop")]
SERVED = ["plaintext", "json", "sleep", "db", "queries", "fortunes", "updates", "fanout"]
STACK = {"purpose": "peers", "processes": 1}
pytestmark = pytest.mark.parametrize("stack", PEERS, indirect=True, scope="module")

IN_FLIGHT = 100        # at once: more than a small thread pool, less than the /sleep scenario
SLEEP_MS = 1000


def shape(path: str, body: bytes) -> None:
    """The body as the demo's endpoint gives it (m2stack/demo), beyond scenarios.py's check."""
    endpoint = path.split("?", 1)[0]
    if endpoint == "/plaintext":
        assert body == b"Hello, World!"
        return
    if endpoint == "/fortunes":
        text = body.decode()
        # The header row, the table's 12 fortunes and the one added at request time.
        assert text.startswith("<!DOCTYPE html>") and text.count("<tr>") == 14, text[:300]
        assert "&lt;script&gt;" in text and "Additional fortune added at request time." in text
        return
    data = json.loads(body)
    if endpoint == "/json":
        assert data == {"message": "Hello, World!"}
    elif endpoint == "/sleep":
        assert data == {"slept_ms": int(path.split("ms=", 1)[1])}
    elif endpoint == "/db":
        assert set(data) == {"id", "randomNumber"} and 1 <= data["id"] <= 10_000
    elif endpoint in ("/queries", "/updates"):
        count = int(path.split("queries=", 1)[1])
        assert len(data) == count and all(set(w) == {"id", "randomNumber"} for w in data), data
    elif endpoint == "/fanout":
        n = int(path.split("n=", 1)[1])
        assert data["n"] == n and data["ok"] == n and data["failed"] == 0, data
    else:
        raise AssertionError(f"no shape known for {path}")


@pytest.mark.parametrize("scenario", SERVED)
def test_every_endpoint_of_the_scenario_answers_correctly(stack: Stack, scenario):
    for request in probes(SCENARIOS[scenario]):
        response = stack.request(request.method, request.path, data=request.body,
                                 headers=request.headers, timeout=15)
        assert response.status_code in request.expect, (request.path, response.status_code, response.text[:500])
        assert request.contains is None or request.contains in response.content, (request.path, response.text[:500])
        shape(request.path, response.content)
        assert response.headers["X-Front-Door"] == stack.front_door
        assert response.headers["X-Hub"] == stack.hub


def statuses(results: list) -> str:
    """What a burst got, for a failure's message: the count per status, a refused body."""
    counts = Counter(str(status) for status, _ in results)
    refused = next((body[:600] for status, body in results if status != 200 and body), b"")
    return f"{dict(counts)} {refused!r}"


def burst(stack: Stack, path: str, count: int, timeout: float) -> tuple[list, float]:
    """`count` GETs of `path` at once, each on its own connection: (status or error, body)s
    and the seconds until the last one ended."""
    def one(_):
        try:
            response = requests.get(stack.url + path, timeout=timeout)
            return response.status_code, response.content
        except requests.RequestException as exc:
            return type(exc).__name__, b""

    started = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one, range(count)))
    return results, time.monotonic() - started


def test_sleeps_overlap(stack: Stack):
    """IN_FLIGHT one-second sleeps at once end in about one second: a server that runs
    them a few at a time (a small thread pool) takes IN_FLIGHT / pool seconds and its
    clients time out, which `make compare` showed as 0 requests served."""
    results, elapsed = burst(stack, f"/sleep?ms={SLEEP_MS}", IN_FLIGHT, timeout=6)
    assert [status for status, _ in results] == [200] * IN_FLIGHT, statuses(results)
    assert all(json.loads(body) == {"slept_ms": SLEEP_MS} for _, body in results)
    assert elapsed < 5, f"{IN_FLIGHT} sleeps of {SLEEP_MS} ms took {elapsed:.1f} s"


def test_fanouts_in_flight_do_not_starve_their_own_gets(stack: Stack):
    """/fanout's GETs come back to the same server: with every worker busy in a fan-out
    waiting for them, a server with too few workers deadlocks until FANOUT_TIMEOUT."""
    results, elapsed = burst(stack, "/fanout?n=10", IN_FLIGHT // 2, timeout=20)
    assert [status for status, _ in results] == [200] * (IN_FLIGHT // 2), statuses(results)
    assert all(json.loads(body)["failed"] == 0 for _, body in results)
    assert elapsed < 15, f"{IN_FLIGHT // 2} fan-outs took {elapsed:.1f} s"


def test_clients_that_gave_up_leave_no_queue_behind(stack: Stack):
    """`make compare` runs the scenarios back to back: the sleeps of the last one, whose
    clients have gone, must not hold up the next scenario's first request."""
    results, _ = burst(stack, "/sleep?ms=3000", IN_FLIGHT, timeout=0.5)
    assert all(status == "ReadTimeout" for status, _ in results), statuses(results)
    started = time.monotonic()
    response = stack.get("/db", timeout=15)
    assert response.status_code == 200, response.text[:500]
    assert time.monotonic() - started < 4.5, "GET /db waited behind the abandoned sleeps"
