"""The bare shape (compose/bare.yml): mongrel2 round-robining straight to 4 handlers, per
hub, scaled while serving (the session's shared demo stacks, conftest.py). The default
shape, behind the dispatcher, is test_dispatch.py's.

That `down` leaves no container, network or volume behind is checked by the stack
factory (conftest.py) each time it takes a stack down, in every module.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests

import streams
from stack import MONGREL2, SHARED, report
from support import wait_until

pytestmark = pytest.mark.parametrize(argvalues=MONGREL2, **SHARED)


@pytest.fixture
def stack(demo_stack):
    return demo_stack


def handler_ids(stack) -> set[str]:
    return {f"{cid[:12]}:1" for cid in stack.app_ids()}


def test_serves_the_demo_endpoints(stack):
    response = stack.get("/json")
    assert response.status_code == 200
    assert response.json() == {"message": "Hello, World!"}
    assert response.headers["X-Hub"] == stack.hub
    assert response.headers["X-Front-Door"] == "mongrel2"
    assert response.headers["X-Handler-Id"] in handler_ids(stack)
    assert stack.get("/plaintext").text == "Hello, World!"
    assert stack.get("/sleep?ms=10").json() == {"slept_ms": 10}
    health = stack.get("/healthz")
    assert health.json() == {"status": "ok", "hub": stack.hub, "handler_id": health.headers["X-Handler-Id"]}
    assert stack.get("/static/health.txt").status_code == 200


def test_the_bare_shape_runs_no_dispatcher_and_handlers_pull_from_mongrel2(stack):
    assert not stack.variant.dispatched
    assert stack.container_ids("dispatcher", all_states=True) == []
    for cid in stack.app_ids():
        env = stack.inspect(cid)["Config"]["Env"]
        assert "HANDLER_DISPATCHER=" in env and "M2_REQUESTS_ENDPOINT=tcp://mongrel2:9997" in env, env


def test_requests_are_spread_over_every_handler(stack):
    ids = Counter(stack.get("/json").headers["X-Handler-Id"] for _ in range(80))
    assert set(ids) == handler_ids(stack) and len(ids) == stack.processes, ids


def test_handler_exception_is_500_and_that_handler_keeps_serving(stack):
    failed = stack.get("/error")
    assert failed.status_code == 500
    body = failed.json()
    assert body == {"error": {"status": 500, "message": "internal server error"},
                    "request_id": failed.headers["X-Request-Id"]}
    broken = failed.headers["X-Handler-Id"]
    for _ in range(30):  # round robin brings us back to the same process soon
        ok = stack.get("/json")
        assert ok.status_code == 200
        if ok.headers["X-Handler-Id"] == broken:
            break
    else:
        pytest.fail(f"handler {broken} never answered again")


def test_scaling_down_and_up_keeps_serving_without_restarting_mongrel2(stack):
    mongrel2_id, = stack.container_ids("mongrel2")
    started_at = stack.inspect(mongrel2_id)["State"]["StartedAt"]
    results: list[int | str] = []
    served_by: set[str] = set()
    stop = threading.Event()

    def client():
        session = requests.Session()
        while not stop.is_set():
            try:
                response = session.get(stack.url + "/json", timeout=3)
                results.append(response.status_code)
                served_by.add(response.headers.get("X-Handler-Id", ""))
            except requests.RequestException as exc:
                results.append(type(exc).__name__)
            time.sleep(0.01)

    worker = threading.Thread(target=client)
    worker.start()
    try:
        stack.scale(1)
        assert len(stack.container_ids("handler")) == 1
        stack.scale(stack.processes)
        stack.wait_healthy(120)
        assert len(stack.container_ids("handler")) == stack.processes
        new_ids = handler_ids(stack)
        served_by.clear()
        # Serving goes on until every handler, the new ones included, has answered.
        wait_until(lambda: new_ids <= served_by, 30, "every handler to answer the client")
    finally:
        stop.set()
        worker.join(15)
    failures = [r for r in results if r != 200]
    report(f"scale {stack.processes}->1->{stack.processes}, one sequential client", requests=len(results),
           outcomes=dict(Counter(results)))
    assert len(results) > 50, Counter(results)
    # Every answer is a 200. Without the dispatcher a request mongrel2 had already written
    # to a stopping handler when it disconnected is lost (README, "Scale-down is not
    # perfectly lossless"): at most one per stopped handler, never an error status.
    assert all(isinstance(r, str) for r in failures) and len(failures) <= stack.processes - 1, Counter(results)
    assert stack.container_ids("mongrel2") == [mongrel2_id]
    assert stack.inspect(mongrel2_id)["State"]["StartedAt"] == started_at, "mongrel2 was restarted"


# -- WebSocket and streams through mongrel2's round-robin (uploads: test_dispatch.py) ------------------------------

def test_websocket_echo_and_chat_over_every_handler(stack):
    streams.websocket_echo(stack)
    streams.websocket_chat(stack)


def test_a_stream_arrives_as_produced_and_a_download_whole(stack):
    streams.streamed_chunks(stack)
    streams.download_hashed(stack)
