"""hubs/handoff.py: a request served in the receiving greenlet starts the next receiver
exactly when it first switches away, and never when it does not; the hook is there only
once installed, and a later settrace by anyone else is seen."""

from __future__ import annotations

import greenlet
import pytest

from m2stack.hubs import handoff


@pytest.fixture
def started():
    """A process where the hand-off was never installed; what its hook starts is recorded
    instead of run. The process's state is put back afterwards."""
    saved = handoff._start, handoff._previous_trace, greenlet.gettrace()
    handoff._start = None
    greenlet.settrace(None)
    recorded: list = []
    yield recorded
    handoff._start, handoff._previous_trace = saved[:2]
    greenlet.settrace(saved[2])


def test_serving_here_before_the_hook_is_installed_is_refused(started):
    served = []
    with pytest.raises(handoff.NotInstalled, match="install_handoff"):
        handoff.serve_here(lambda: None, served.append, ("request",))
    assert served == [] and handoff.installed() is False


def test_a_request_that_never_switches_keeps_the_receiver(started):
    handoff.install(started.append)
    served = []
    assert handoff.serve_here(lambda: None, served.append, ("request",)) is True
    assert served == ["request"] and started == []


def test_a_request_that_waits_starts_the_next_receiver_once_at_its_first_switch(started):
    handoff.install(started.append)
    main = greenlet.getcurrent()
    take_over = lambda: None

    def request():
        main.switch("waiting")  # as a hub would take over while it waits
        main.switch("waiting again")

    receiver = greenlet.greenlet(lambda: handoff.serve_here(take_over, request, ()))
    assert receiver.switch() == "waiting"
    assert started == [take_over]  # at the switch itself, before anything else ran
    assert receiver.switch() == "waiting again"
    assert receiver.switch() is False  # done, and it knows it is no longer the receiver
    assert started == [take_over]


def test_an_error_in_the_request_propagates_and_leaves_no_trace_behind(started):
    handoff.install(started.append)

    def failing():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        handoff.serve_here(lambda: None, failing, ())
    assert greenlet.getcurrent() not in handoff._serving_here and started == []


def test_installing_twice_hooks_once_and_keeps_the_trace_that_was_there(started):
    seen = []
    greenlet.settrace(lambda event, args: seen.append(event))
    handoff.install(started.append)
    handoff.install(started.append)
    greenlet.greenlet(lambda: None).switch()  # one switch there, one back
    assert seen == ["switch", "switch"]  # the earlier trace, called once per switch
    assert handoff.installed() is True


def test_a_later_settrace_by_someone_else_is_seen(started):
    handoff.install(started.append)
    assert handoff.installed() is True
    greenlet.settrace(lambda event, args: None)
    assert handoff.installed() is False
