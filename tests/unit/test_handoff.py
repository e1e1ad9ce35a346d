"""hubs/handoff.py: a request served in the receiving greenlet hands receiving on exactly
when it first switches away, and never when it does not."""

from __future__ import annotations

import greenlet

from m2stack.hubs import handoff


def test_a_request_that_never_switches_keeps_the_receiver():
    handoff.install()
    handed_on = []
    served = []
    assert handoff.serve_here(lambda: handed_on.append(1), served.append, ("request",)) is True
    assert served == ["request"] and handed_on == []


def test_a_request_that_waits_hands_receiving_on_once_at_its_first_switch():
    handoff.install()
    main = greenlet.getcurrent()
    handed_on = []

    def request():
        main.switch("waiting")  # as a hub would take over while it waits
        main.switch("waiting again")

    receiver = greenlet.greenlet(lambda: handoff.serve_here(lambda: handed_on.append(1), request, ()))
    assert receiver.switch() == "waiting"
    assert handed_on == [1]  # at the switch itself, before anything else ran
    assert receiver.switch() == "waiting again"
    assert receiver.switch() is False  # done, and it knows it is no longer the receiver
    assert handed_on == [1]


def test_an_error_in_the_request_leaves_no_trace_behind():
    handoff.install()

    def failing():
        raise ValueError("boom")

    try:
        handoff.serve_here(lambda: None, failing, ())
    except ValueError:
        pass
    assert greenlet.getcurrent() not in handoff._serving_here
