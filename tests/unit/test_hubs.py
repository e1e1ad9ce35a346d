"""The greenlet loop both hubs share (hubs/greenlet_base.py), run on each real hub: the
pool, serving where received and the hand-off's contract, ZeroMQ made cooperative, the
watchdog's interrupt. In this process, unpatched: the hubs' own sleeps and waits."""

from __future__ import annotations

import greenlet
import pytest
import zmq

from m2stack.hubs import handoff, load


@pytest.fixture(params=["gevent", "eventlet"])
def hub(request):
    """Each hub, in a process where the hand-off was never installed (put back after)."""
    saved = handoff._start, handoff._previous_trace, greenlet.gettrace()
    handoff._start = None
    greenlet.settrace(None)
    yield load(request.param)
    handoff._start, handoff._previous_trace = saved[:2]
    greenlet.settrace(saved[2])


def test_a_pool_alone_installs_no_hook(hub):
    pool = hub.make_pool(4)
    ran = []
    hub.spawn(pool, ran.append, 1)
    assert hub.join(pool, 1.0) and ran == [1]
    assert greenlet.gettrace() is None and not hub.handoff_installed()


def test_serving_here_needs_the_hand_off_installed(hub):
    pool = hub.make_pool(4)
    with pytest.raises(handoff.NotInstalled):
        hub.serve_here(pool, lambda: None, int)
    assert hub.in_flight(pool) == 0  # the place it took is given back


def test_install_handoff_is_idempotent_and_its_removal_is_seen(hub):
    hub.install_handoff()
    hub.install_handoff()
    assert hub.handoff_installed()
    greenlet.settrace(None)  # someone else's settrace
    assert not hub.handoff_installed()


def test_a_request_that_does_not_wait_is_served_here_and_starts_nobody(hub):
    hub.install_handoff()
    pool = hub.make_pool(4)
    started = []
    assert hub.serve_here(pool, lambda: started.append(1), lambda: None) is True
    hub.sleep(0.01)
    assert started == [] and hub.in_flight(pool) == 0


def test_a_request_that_waits_starts_take_over_in_a_greenlet_of_its_own_which_may_wait(hub):
    hub.install_handoff()
    pool = hub.make_pool(4)
    me = greenlet.getcurrent()
    events = []

    def take_over():
        events.append(("take_over started", greenlet.getcurrent() is not me))
        hub.sleep(0.001)  # waiting is allowed: the hook only starts this greenlet
        events.append("take_over waited")

    def request():
        assert hub.in_flight(pool) == 1
        hub.sleep(0.005)
        events.append("request done")

    assert hub.serve_here(pool, take_over, request) is False
    hub.sleep(0.01)
    assert events == [("take_over started", True), "take_over waited", "request done"]
    assert hub.in_flight(pool) == 0


def test_an_error_in_a_request_served_here_propagates_and_frees_its_place(hub):
    hub.install_handoff()
    pool = hub.make_pool(1)

    def failing():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        hub.serve_here(pool, lambda: None, failing)
    assert hub.in_flight(pool) == 0
    assert hub.serve_here(pool, lambda: None, int) is True  # its one place is free again


def test_the_pool_bounds_the_greenlets_in_flight(hub):
    pool = hub.make_pool(2)
    most = []

    def request():
        most.append(hub.in_flight(pool))
        hub.sleep(0.005)

    for _ in range(6):
        hub.spawn(pool, request)  # waits while both places are taken
    assert hub.join(pool, 1.0)
    assert len(most) == 6 and max(most) == 2


def test_interrupt_raises_in_the_waiting_greenlet(hub):
    caught = []

    def waiter():
        try:
            hub.sleep(5)
        except LookupError as exc:
            caught.append(str(exc))

    hub.spawn_background(lambda: (caught.append(hub.current()), waiter()))
    hub.sleep(0.01)
    hub.interrupt(caught.pop(), LookupError("late"))
    hub.sleep(0.01)
    assert caught == ["late"]


def test_receive_and_send_on_plain_pyzmq(hub):
    context = zmq.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    try:
        pull.bind("inproc://hubs-test")
        push.connect("inproc://hubs-test")
        assert hub.receive(pull, 0.02) is None  # nothing: back after the timeout
        hub.spawn_background(lambda: (hub.sleep(0.01), hub.send(push, b"hello")))
        assert hub.receive(pull, 1.0) == b"hello"  # woken by the socket's FD
    finally:
        pull.close(0)
        push.close(0)
        context.term()


def test_resolve_and_map_concurrently(hub):
    assert "127.0.0.1" in hub.resolve("localhost", 80) or "::1" in hub.resolve("localhost", 80)
    assert hub.map_concurrently(lambda n: n * 2, [1, 2, 3]) == [2, 4, 6]
    assert hub.versions()[hub.NAME] and "greenlet" in hub.versions()


def test_libpq_waits_on_the_hub_not_in_the_os(hub):
    import socket

    import psycopg2
    import psycopg2.extensions

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # the kernel accepts libpq's connection; nothing ever answers it
    ticks = []

    def meanwhile():
        for _ in range(5):
            hub.sleep(0.01)
            ticks.append(1)
        listener.close()  # resets the waiting connection

    psycopg2.extensions.set_wait_callback(hub.wait_for_db)
    try:
        hub.spawn_background(meanwhile)
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(host="127.0.0.1", port=listener.getsockname()[1], dbname="x", user="x",
                             connect_timeout=5)
    finally:
        psycopg2.extensions.set_wait_callback(None)
        listener.close()
    assert ticks == [1] * 5  # the hub ran other greenlets while libpq waited
