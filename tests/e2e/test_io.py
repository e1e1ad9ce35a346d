"""Real I/O through ONE handler process: PostgreSQL, outbound HTTP, validated writes.

One stack per variant (module scope), scaled to a single handler so that every timing
below is one process's hub at work. The pool gets 50 connections (the cooperation proof
runs 50 queries at once) and a short acquire timeout (the exhaustion test). The test
that stops the database runs last.
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

from stack import VARIANTS, Stack, wait_for

POOL_SIZE = 50


@pytest.fixture(scope="module", params=list(VARIANTS))
def io_stack(request, docker_available):
    stack = Stack(f"io-{request.param}", VARIANTS[request.param],
                  env={"DB_POOL_SIZE": str(POOL_SIZE), "DB_POOL_TIMEOUT": "0.5"})
    stack.variant = request.param
    try:
        stack.up(handlers=1)
        yield stack
    finally:
        stack.down()


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

def test_db_returns_one_random_world_row(io_stack):
    rows = [io_stack.get("/db") for _ in range(5)]
    for response in rows:
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
        assert_world(response.json())
    assert len({r.json()["id"] for r in rows}) > 1


@pytest.mark.parametrize("raw, expected", [
    ("", 1), ("queries=abc", 1), ("queries=", 1), ("queries=0", 1), ("queries=-5", 1),
    ("queries=1", 1), ("queries=20", 20), ("queries=500", 500), ("queries=501", 500),
    ("queries=100000", 500),
])
def test_queries_counts_and_clamps(io_stack, raw, expected):
    response = io_stack.get("/queries?" + raw if raw else "/queries")
    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list) and len(rows) == expected
    for row in rows:
        assert_world(row)


def test_fortunes_are_escaped_sorted_utf8_with_the_extra_one(io_stack):
    response = io_stack.get("/fortunes")
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


def test_updates_write_every_row_back(io_stack):
    response = io_stack.get("/updates?queries=7")
    assert response.status_code == 200
    rows = response.json()
    assert len(rows) == 7
    for row in rows:
        assert_world(row)
        assert int(psql(io_stack, f"SELECT randomnumber FROM world WHERE id = {row['id']}")) == row["randomNumber"]
    assert len(io_stack.get("/updates?queries=nope").json()) == 1
    assert len(io_stack.get("/updates?queries=9999").json()) == 500


# -- outbound HTTP --------------------------------------------------------------------------------

def test_fanout_summarises_k_requests_to_a_server_in_the_stack(io_stack):
    response = io_stack.get("/fanout?n=5")
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["n"] == 5 and summary["ok"] == 5 and summary["failed"] == 0
    assert summary["statuses"] == {"200": 5} and summary["errors"] == {}
    assert summary["url"].startswith("http://")  # FANOUT_URL: mongrel2's /static/ by default
    if summary["url"].endswith("/static/sample.json"):
        assert summary["bytes"] == 5 * len(io_stack.get("/static/sample.json").content)
    assert summary["bytes"] > 0 and summary["bytes"] % 5 == 0


@pytest.mark.parametrize("query", ["n=0", "n=101", "n=abc", "n=-1", "n=5&delay_ms=99999"])
def test_fanout_rejects_bad_counts(io_stack, query):
    response = io_stack.get("/fanout?" + query)
    assert response.status_code == 400 and response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["details"]["argument"] in ("n", "delay_ms")


# -- items: validation, storage, public view ---------------------------------------------------------

ITEM = {"name": "Grüner Tee", "price_cents": 450, "tags": ["tea", "green"],
        "owner_email": "owner@example.org", "note": "supplier: private"}
PUBLIC = {"id", "name", "price_cents", "tags", "created_at"}


def item_count(stack) -> int:
    return int(psql(stack, "SELECT count(*) FROM items"))


def test_items_post_201_public_view_then_get(io_stack):
    response = io_stack.request("POST", "/items", json=ITEM)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == PUBLIC  # owner_email and note are owner-only
    assert body["name"] == "Grüner Tee" and body["price_cents"] == 450 and body["tags"] == ["tea", "green"]
    assert response.headers["Location"] == f"/items/{body['id']}"
    fetched = io_stack.get(f"/items/{body['id']}")
    assert fetched.status_code == 200 and fetched.json() == body
    stored = psql(io_stack, f"SELECT owner_email || '|' || note FROM items WHERE id = {body['id']}")
    assert stored == "owner@example.org|supplier: private"


def test_items_defaults_apply(io_stack):
    response = io_stack.request("POST", "/items", json={"name": "x", "price_cents": 0, "owner_email": "a@b.co"})
    assert response.status_code == 201 and response.json()["tags"] == []


def test_items_get_missing_is_404_json(io_stack):
    error = assert_json_error(io_stack.get("/items/999999999"), 404, "no such item")
    assert error["details"] == {"id": 999999999}
    assert io_stack.get("/items/abc").status_code == 404  # no route matches


def test_items_422_lists_every_invalid_field(io_stack):
    before = item_count(io_stack)
    bad = {"name": "", "price_cents": -1, "tags": ["ok", "Not OK"], "note": 5, "colour": "red"}
    error = assert_json_error(io_stack.request("POST", "/items", json=bad), 422, "invalid item")
    by_path = {e["path"]: e["reason"] for e in error["details"]["errors"]}
    assert set(by_path) == {"$.name", "$.price_cents", "$.owner_email", "$.tags[1]", "$.note", "$.colour"}
    assert by_path["$.owner_email"] == "required field missing"
    assert by_path["$.colour"] == "unknown field"
    assert by_path["$.price_cents"] == "Expected `int` >= 0"
    assert by_path["$.note"] == "Expected `str`, got `int`"
    not_object = assert_json_error(io_stack.request("POST", "/items", json=[ITEM]), 422, "invalid item")
    assert not_object["details"]["errors"] == [{"path": "$", "reason": "Expected `object`, got `list`"}]
    assert item_count(io_stack) == before  # nothing written


def test_items_400_415_413(io_stack):
    before = item_count(io_stack)
    headers = {"Content-Type": "application/json"}
    assert_json_error(io_stack.request("POST", "/items", data=b'{"name": "x",', headers=headers),
                      400, "malformed JSON body")
    assert_json_error(io_stack.request("POST", "/items", data=json.dumps(ITEM),
                                       headers={"Content-Type": "text/plain"}), 415,
                      "expected Content-Type: application/json")
    huge = dict(ITEM, note="x" * 30_000)  # over mongrel2's limits.content_length (20480)
    too_big = requests.post(io_stack.url + "/items", json=huge, timeout=10)
    assert too_big.status_code == 413
    assert item_count(io_stack) == before


# -- cooperation proofs: one process, 50 waits at once --------------------------------------------

def test_50_concurrent_pg_sleeps_overlap_in_one_handler(io_stack, record_property):
    warm, responses = concurrently(io_stack, "/db/sleep?ms=200", 50)  # opens the pool's 50 connections
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200][:3]
    elapsed, responses = concurrently(io_stack, "/db/sleep?ms=200", 50)
    assert all(r.status_code == 200 and r.json() == {"slept_ms": 200} for r in responses)
    assert len({r.headers["X-Handler-Id"] for r in responses}) == 1, "not one process"
    print(f"\n{io_stack.variant}: 50 x pg_sleep(0.2) through one handler: {elapsed:.3f}s"
          f" (cold pool: {warm:.3f}s; serialised would be 10s)")
    record_property("pg_sleep_50_seconds", round(elapsed, 3))
    assert elapsed < 1.0, f"50 concurrent pg_sleep(0.2) took {elapsed:.2f}s: the hub blocked"


def test_fanout_of_50_slow_requests_overlaps_in_one_handler(io_stack, record_property):
    # Each GET goes back through mongrel2 to /sleep?ms=200 on this same (only) handler:
    # if outbound HTTP blocked the hub, the inner requests could not even be served.
    started = time.monotonic()
    response = io_stack.get("/fanout?n=50&delay_ms=200", timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["ok"] == 50 and summary["sum_of_request_ms"] >= 50 * 200
    print(f"\n{io_stack.variant}: fanout of 50 x 200 ms GETs: {summary['elapsed_ms']} ms in the handler,"
          f" {elapsed:.3f}s at the client (sum of the GETs: {summary['sum_of_request_ms']} ms)")
    record_property("fanout_50_seconds", round(elapsed, 3))
    assert elapsed < 1.0, f"fanout of 50 slow GETs took {elapsed:.2f}s: outbound HTTP blocked the hub"


def test_pool_exhausted_is_503_json_then_serves_again(io_stack):
    # 50 connections, 60 queries of 1.5 s: 10 wait DB_POOL_TIMEOUT (0.5 s), then 503.
    elapsed, responses = concurrently(io_stack, "/db/sleep?ms=1500", POOL_SIZE + 10)
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == POOL_SIZE and statuses.count(503) == 10, statuses
    for response in responses:
        if response.status_code == 503:
            error = assert_json_error(response, 503, "database pool exhausted")
            assert error["details"]["pool_size"] == POOL_SIZE and response.headers["Retry-After"] == "1"
    assert io_stack.get("/db").status_code == 200


def test_database_stopped_is_503_then_recovers_by_itself(io_stack):
    app_ids = io_stack.container_ids("handler")  # whatever serves the app, never restarted
    started_at = [io_stack.inspect(i)["State"]["StartedAt"] for i in app_ids]
    io_stack.compose("stop", "db")
    try:
        for path in ("/db", "/db", "/fortunes", "/items/1"):  # first uses of now-broken connections
            started = time.monotonic()
            assert_json_error(io_stack.get(path), 503, "database unavailable")
            assert time.monotonic() - started < 5
        assert_json_error(io_stack.request("POST", "/items", json=ITEM), 503, "database unavailable")
        assert io_stack.get("/json").status_code == 200  # the rest of the app is unaffected
    finally:
        io_stack.compose("start", "db")
    wait_for(lambda: io_stack.get("/db").status_code == 200, 60, "/db to recover after `start db`")
    assert all(io_stack.get("/db").status_code == 200 for _ in range(20))
    assert [io_stack.inspect(i)["State"]["StartedAt"] for i in app_ids] == started_at, "handler restarted"
