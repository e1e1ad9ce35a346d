"""Real I/O through ONE app process: PostgreSQL, outbound HTTP, validated writes.

One stack per variant (module scope), with a single app process (one handler behind
Mongrel2, one Gunicorn worker) so that every overlap below is one process's hub at
work. The pool gets 50 connections (the cooperation proof runs 50 queries at once) and
a short acquire timeout (the exhaustion test). The test that stops the database runs last.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import streams
from stack import DEMO, ROOT, GaugeWatch, Stack
from support import wait_until

POOL_SIZE = 50
STACK = {"purpose": "io", "processes": 1,
         "env": {"DB_POOL_SIZE": str(POOL_SIZE), "DB_POOL_TIMEOUT": "0.5"}}
pytestmark = pytest.mark.parametrize("stack", DEMO, indirect=True, scope="module")
SAMPLE_JSON = b'{"message":"Hello, World!"}'  # /json: what FANOUT_URL is on the WSGI variants


def psql(stack: Stack, sql: str) -> str:
    """Ask the database directly (superuser over the container's unix socket)."""
    db_id, = stack.container_ids("db")
    result = subprocess.run(["docker", "exec", db_id, "psql", "-h", "/run/postgresql", "-U", "postgres",
                             "-d", "hello_world", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def concurrently(stack: Stack, path: str, count: int, timeout: float = 20) -> tuple[float, list]:
    """`count` GETs released at the same instant; (seconds until the last answered, responses)."""
    barrier = threading.Barrier(count + 1)

    def one(_):
        session = requests.Session()
        barrier.wait()
        try:
            return session.get(stack.url + path, timeout=timeout)
        finally:
            session.close()

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(one, i) for i in range(count)]
        barrier.wait()
        started = time.monotonic()
        responses = [f.result() for f in futures]
        return time.monotonic() - started, responses


def assert_world(row) -> None:
    assert set(row) == {"id", "randomNumber"}
    assert 1 <= row["id"] <= 10_000 and 1 <= row["randomNumber"] <= 10_000


def assert_json_error(response, status: int, message: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["status"] == status and body["error"]["message"] == message, body
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body["error"]


# -- the TechEmpower endpoints ----------------------------------------------------------------

def test_db_returns_one_random_world_row(stack):
    rows = [stack.get("/db") for _ in range(5)]
    for response in rows:
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
        assert_world(response.json())
    assert len({r.json()["id"] for r in rows}) > 1


@pytest.mark.parametrize("raw, expected", [
    ("", 1), ("queries=abc", 1), ("queries=", 1), ("queries=0", 1), ("queries=-5", 1),
    ("queries=1", 1), ("queries=20", 20), ("queries=500", 500), ("queries=501", 500),
    ("queries=100000", 500),
])
def test_queries_counts_and_clamps(stack, raw, expected):
    response = stack.get("/queries?" + raw if raw else "/queries")
    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list) and len(rows) == expected
    for row in rows:
        assert_world(row)


def test_fortunes_are_escaped_sorted_utf8_with_the_extra_one(stack):
    response = stack.get("/fortunes")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode("utf-8")
    assert page.startswith("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>")
    assert "<script>" not in page
    assert ("&lt;script&gt;alert(&quot;This should not be displayed in a browser alert box.&quot;);"
            "&lt;/script&gt;") in page
    rows = [(int(i), html.unescape(m)) for i, m in re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", page)]
    assert len(rows) == 13
    assert (0, "Additional fortune added at request time.") in rows
    assert (12, "フレームワークのベンチマーク") in rows
    assert [m for _, m in rows] == sorted(m for _, m in rows)


def test_updates_write_every_row_back(stack):
    response = stack.get("/updates?queries=7")
    assert response.status_code == 200
    rows = response.json()
    assert len(rows) == 7
    for row in rows:
        assert_world(row)
        assert int(psql(stack, f"SELECT randomnumber FROM world WHERE id = {row['id']}")) == row["randomNumber"]
    assert len(stack.get("/updates?queries=nope").json()) == 1
    assert len(stack.get("/updates?queries=9999").json()) == 500


# -- outbound HTTP --------------------------------------------------------------------------------

# FANOUT_URL of each front door (docker-compose.yml leaves the default; compose/wsgi.yml sets it).
FANOUT_TARGET = {"mongrel2": ("http://mongrel2:6767/static/sample.json",
                              len((ROOT / "mongrel2" / "static" / "sample.json").read_bytes())),
                 "wsgi": ("http://wsgi:6767/json", len(SAMPLE_JSON))}


def test_fanout_summarises_k_requests_to_a_server_in_the_stack(stack):
    response = stack.get("/fanout?n=5")
    assert response.status_code == 200, response.text
    summary = response.json()
    url, size = FANOUT_TARGET[stack.front_door]
    assert summary["n"] == 5 and summary["ok"] == 5 and summary["failed"] == 0
    assert summary["statuses"] == {"200": 5} and summary["errors"] == {}
    assert summary["url"] == url and summary["bytes"] == 5 * size


@pytest.mark.parametrize("query, argument", [("n=0", "n"), ("n=101", "n"), ("n=abc", "n"), ("n=-1", "n"),
                                             ("n=5&delay_ms=99999", "delay_ms")])
def test_fanout_rejects_bad_counts(stack, query, argument):
    response = stack.get("/fanout?" + query)
    assert response.status_code == 400 and response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["details"]["argument"] == argument


# -- items: validation, storage, public view ---------------------------------------------------------

ITEM = {"name": "Grüner Tee", "price_cents": 450, "tags": ["tea", "green"],
        "owner_email": "owner@example.org", "note": "supplier: private"}
PUBLIC = {"id", "name", "price_cents", "tags", "created_at"}


def item_count(stack) -> int:
    return int(psql(stack, "SELECT count(*) FROM items"))


def test_items_post_201_public_view_then_get(stack):
    response = stack.request("POST", "/items", json=ITEM)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == PUBLIC  # owner_email and note are owner-only
    assert body["name"] == "Grüner Tee" and body["price_cents"] == 450 and body["tags"] == ["tea", "green"]
    assert response.headers["Location"] == f"/items/{body['id']}"
    fetched = stack.get(f"/items/{body['id']}")
    assert fetched.status_code == 200 and fetched.json() == body
    stored = psql(stack, f"SELECT owner_email || '|' || note FROM items WHERE id = {body['id']}")
    assert stored == "owner@example.org|supplier: private"


def test_items_defaults_apply(stack):
    response = stack.request("POST", "/items", json={"name": "x", "price_cents": 0, "owner_email": "a@b.co"})
    assert response.status_code == 201 and response.json()["tags"] == []


def test_items_get_missing_is_404_json(stack):
    error = assert_json_error(stack.get("/items/999999999"), 404, "no such item")
    assert error["details"] == {"id": 999999999}
    assert stack.get("/items/abc").status_code == 404  # no route matches


def test_items_422_lists_every_invalid_field(stack):
    before = item_count(stack)
    bad = {"name": "", "price_cents": -1, "tags": ["ok", "Not OK"], "note": 5, "colour": "red"}
    error = assert_json_error(stack.request("POST", "/items", json=bad), 422, "invalid item")
    by_path = {e["path"]: e["reason"] for e in error["details"]["errors"]}
    assert set(by_path) == {"$.name", "$.price_cents", "$.owner_email", "$.tags[1]", "$.note", "$.colour"}
    assert by_path["$.owner_email"] == "required field missing"
    assert by_path["$.colour"] == "unknown field"
    assert by_path["$.price_cents"] == "Expected `int` >= 0"
    assert by_path["$.note"] == "Expected `str`, got `int`"
    not_object = assert_json_error(stack.request("POST", "/items", json=[ITEM]), 422, "invalid item")
    assert not_object["details"]["errors"] == [{"path": "$", "reason": "Expected `object`, got `list`"}]
    assert item_count(stack) == before  # nothing written


def test_items_400_415_413(stack):
    before = item_count(stack)
    headers = {"Content-Type": "application/json"}
    assert_json_error(stack.request("POST", "/items", data=b'{"name": "x",', headers=headers),
                      400, "malformed JSON body")
    assert_json_error(stack.request("POST", "/items", data=json.dumps(ITEM),
                                       headers={"Content-Type": "text/plain"}), 415,
                      "expected Content-Type: application/json")
    # 30 KB: past mongrel2's limits.content_length, so it arrives as an upload; the app
    # reads it and its validation answers (note: 1,000 characters at most), not a 413.
    long_note = dict(ITEM, note="x" * 30_000)
    error = assert_json_error(stack.request("POST", "/items", json=long_note), 422, "invalid item")
    assert [e["path"] for e in error["details"]["errors"]] == ["$.note"]
    streams.refused_over_the_limit(stack, path="/items", content_type="application/json")
    assert item_count(stack) == before


# -- cooperation proofs: one process, 50 waits at once --------------------------------------------
# Overlap is proven twice, neither by a margin of a few hundred milliseconds: the process's
# in-flight gauge reaches 50 (every request inside the app at once), and the burst ends
# in under a tenth of the serial time (50 s) while the ideal is 1 s.

SLOW_MS = 1000
BOUND_S = 5.0


def test_50_concurrent_pg_sleeps_overlap_in_one_process(stack, record_property):
    warm, responses = concurrently(stack, "/db/sleep?ms=200", 50)  # opens the pool's 50 connections
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200][:3]
    with GaugeWatch(stack) as in_flight:
        elapsed, responses = concurrently(stack, f"/db/sleep?ms={SLOW_MS}", 50)
    assert all(r.status_code == 200 and r.json() == {"slept_ms": SLOW_MS} for r in responses)
    assert len({r.headers["X-Handler-Id"] for r in responses}) == 1, "not one process"
    print(f"\n{stack.name}: 50 x pg_sleep({SLOW_MS / 1000:g}) through one process: {elapsed:.3f}s,"
          f" peak in flight {in_flight.peak():g} (cold pool, 50 x 0.2 s: {warm:.3f}s; serialised: 50 s)")
    record_property("pg_sleep_50_seconds", round(elapsed, 3))
    assert in_flight.peak() >= 50, f"at most {in_flight.peak():g} of 50 queries in flight at once"
    assert elapsed < BOUND_S, f"50 concurrent pg_sleep(1) took {elapsed:.2f}s: the hub blocked"


def test_fanout_of_50_slow_requests_overlaps_in_one_process(stack, record_property):
    # Each GET comes back through the front door to /sleep on this same (only) process:
    # if outbound HTTP blocked the hub, the inner requests could not even be served.
    with GaugeWatch(stack) as in_flight:
        started = time.monotonic()
        response = stack.get(f"/fanout?n=50&delay_ms={SLOW_MS}", timeout=30)
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["ok"] == 50 and summary["sum_of_request_ms"] >= 50 * SLOW_MS
    print(f"\n{stack.name}: fanout of 50 x {SLOW_MS} ms GETs: {summary['elapsed_ms']} ms in the app,"
          f" {elapsed:.3f}s at the client, peak in flight {in_flight.peak():g}"
          f" (sum of the GETs: {summary['sum_of_request_ms']} ms)")
    record_property("fanout_50_seconds", round(elapsed, 3))
    # the /fanout request itself and its 50 GETs, all in the one process at once
    assert in_flight.peak() >= 51, f"at most {in_flight.peak():g} of 51 requests in flight at once"
    assert elapsed < BOUND_S, f"fanout of 50 slow GETs took {elapsed:.2f}s: outbound HTTP blocked the hub"


def test_pool_exhausted_is_503_json_then_serves_again(stack):
    # 50 connections, 60 queries of 1.5 s: 10 wait DB_POOL_TIMEOUT (0.5 s), then 503.
    elapsed, responses = concurrently(stack, "/db/sleep?ms=1500", POOL_SIZE + 10)
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == POOL_SIZE and statuses.count(503) == 10, statuses
    for response in responses:
        if response.status_code == 503:
            error = assert_json_error(response, 503, "database pool exhausted")
            assert error["details"]["pool_size"] == POOL_SIZE and response.headers["Retry-After"] == "1"
    assert stack.get("/db").status_code == 200


def test_database_stopped_is_503_then_recovers_by_itself(stack):
    app_ids = stack.app_ids()  # handler or wsgi: never restarted
    started_at = [stack.inspect(i)["State"]["StartedAt"] for i in app_ids]
    stack.compose("stop", "db")
    try:
        for path in ("/db", "/db", "/fortunes", "/items/1"):  # first uses of now-broken connections
            started = time.monotonic()
            assert_json_error(stack.get(path), 503, "database unavailable")
            assert time.monotonic() - started < 5
        assert_json_error(stack.request("POST", "/items", json=ITEM), 503, "database unavailable")
        assert stack.get("/json").status_code == 200  # the rest of the app is unaffected
    finally:
        stack.compose("start", "db")
    wait_until(lambda: stack.get("/db").status_code == 200, 60, "/db to recover after `start db`", interval=0.2)
    assert all(stack.get("/db").status_code == 200 for _ in range(20))
    assert [stack.inspect(i)["State"]["StartedAt"] for i in app_ids] == started_at, f"{stack.app_service} restarted"
