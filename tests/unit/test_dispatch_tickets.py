"""A handler's bookkeeping of the dispatcher's requests (m2stack.doors.mongrel2.tickets):
which dispatcher instance gave each, and what a WHO makes of it. No socket: the intake
(dispatched.py) sends what these calls return."""

import pytest

from m2stack.doors.mongrel2.tickets import Tickets, Turn
from m2stack.protocol import dispatch as wire

OLD, NEW = b"0123456789abcdef", b"fedcba9876543210"


def joined(instance=OLD):
    tickets = Tickets()
    tickets.welcome(instance)
    return tickets


def test_a_request_of_the_dispatcher_that_counts_it_is_acknowledged_by_its_id():
    tickets = joined()
    ticket = tickets.take(b"12")
    assert tickets.may_reply(ticket) and tickets.held == 1
    assert tickets.ended(wire.DONE, ticket) == [wire.DONE, b"12"]
    assert tickets.held == 0


@pytest.mark.parametrize("verb", [wire.DONE, wire.CLOSE, wire.KEEP])
def test_each_ending_is_told_with_its_own_verb(verb):
    tickets = joined()
    assert tickets.ended(verb, tickets.take(b"3")) == [verb, b"3"]


def test_who_from_the_same_instance_withholds_what_it_gave():
    """It took this handler for dead and gave the requests to others (or answered them)."""
    tickets = joined()
    first, second = tickets.take(b"1"), tickets.take(b"2")
    assert tickets.who(OLD) == (2, 0)
    assert not tickets.may_reply(first) and not tickets.may_reply(second)
    assert tickets.held == 2  # still running here: not free in the HELLO that follows
    # it no longer counts them: each ends with a credit back, naming no request
    assert tickets.ended(wire.DONE, first) == [wire.DONE, wire.NO_REQUEST]
    assert tickets.held == 1


def test_who_from_another_instance_answers_what_the_old_one_gave():
    """The dispatcher restarted: the new one repeated nothing, the client still waits."""
    tickets = joined()
    ticket = tickets.take(b"12")
    assert tickets.who(NEW) == (0, 1)
    assert tickets.may_reply(ticket)
    assert tickets.held == 1
    # the new dispatcher's request 12 is not this one: a credit back, no id
    assert tickets.ended(wire.DONE, ticket) == [wire.DONE, wire.NO_REQUEST]
    assert tickets.held == 0


def test_a_new_instances_request_with_an_old_id_is_another_ticket():
    tickets = joined()
    old = tickets.take(b"12")
    tickets.who(NEW)
    tickets.welcome(NEW)
    new = tickets.take(b"12")
    assert new != old and tickets.held == 2
    assert tickets.ended(wire.DONE, new) == [wire.DONE, b"12"]
    assert tickets.ended(wire.DONE, old) == [wire.DONE, wire.NO_REQUEST]


def test_a_second_who_from_the_new_instance_before_its_welcome_is_an_echo():
    """Every message sent before the rejoin gets a WHO: the second one must not turn the
    old instance's requests into withheld ones, nor ask for another HELLO (whose free
    credits could overstate: requests of the new instance may be on their way)."""
    tickets = joined()
    ticket = tickets.take(b"5")
    assert tickets.who(NEW) == (0, 1)
    assert tickets.who(NEW) is None
    tickets.welcome(NEW)
    assert tickets.may_reply(ticket)


def test_the_same_instance_taking_us_for_dead_again_after_the_rejoin_is_heard():
    tickets = joined()
    first = tickets.take(b"1")
    assert tickets.who(OLD) == (1, 0)
    assert tickets.who(OLD) is None  # an echo
    tickets.welcome(OLD)
    second = tickets.take(b"2")
    assert tickets.who(OLD) == (1, 0)
    assert not tickets.may_reply(first) and not tickets.may_reply(second)


def test_a_third_instance_before_the_second_answered_is_heard():
    """Our HELLO went to a dispatcher that died before answering it."""
    tickets = joined()
    ticket = tickets.take(b"1")
    assert tickets.who(NEW) == (0, 1)
    assert tickets.who(b"another") == (0, 0)
    tickets.welcome(b"another")
    assert tickets.may_reply(ticket) and tickets.held == 1


def test_a_new_instance_taking_us_for_dead_withholds_only_its_own():
    tickets = joined()
    old = tickets.take(b"7")
    tickets.who(NEW)
    tickets.welcome(NEW)
    new = tickets.take(b"7")
    assert tickets.who(NEW) == (1, 0)
    assert tickets.may_reply(old) and not tickets.may_reply(new)


def test_a_welcome_from_another_instance_without_who_orphans_what_is_held():
    """A HELLO that reached a new dispatcher before any WHO: it did not give what we hold."""
    tickets = joined()
    ticket = tickets.take(b"4")
    tickets.welcome(NEW)
    assert tickets.ended(wire.DONE, ticket) == [wire.DONE, wire.NO_REQUEST]


def test_a_welcome_from_the_same_instance_changes_nothing():
    tickets = joined()
    ticket = tickets.take(b"4")
    tickets.welcome(OLD)
    assert tickets.ended(wire.CLOSE, ticket) == [wire.CLOSE, b"4"]


def test_hold_is_told_only_to_the_instance_that_could_repeat_the_request():
    tickets = joined()
    ticket = tickets.take(b"9")
    assert tickets.ended(wire.HOLD, ticket) == [wire.HOLD, b"9"]
    assert tickets.held == 1  # a stream's credit stays out until it ends
    orphan = tickets.take(b"10")
    tickets.who(NEW)
    assert tickets.ended(wire.HOLD, orphan) is None
    assert tickets.held == 2
    assert tickets.ended(wire.DONE, orphan) == [wire.DONE, wire.NO_REQUEST]


def test_a_ticket_ended_twice_is_told_once():
    tickets = joined()
    ticket = tickets.take(b"1")
    tickets.ended(wire.DONE, ticket)
    assert tickets.ended(wire.DONE, ticket) is None
    withheld = tickets.take(b"2")
    tickets.who(OLD)
    tickets.ended(wire.DONE, withheld)
    assert tickets.ended(wire.DONE, withheld) is None
    assert tickets.held == 0


def test_before_any_welcome_a_who_orphans_nothing_and_sets_the_instance():
    tickets = Tickets()
    assert tickets.who(OLD) == (0, 0)
    tickets.welcome(OLD)
    ticket = tickets.take(b"1")
    assert tickets.who(OLD) == (1, 0)  # the same instance again: withheld
    assert not tickets.may_reply(ticket)


# -- a turn: what the requests served in one turn of the receive loop end with ------------


def test_a_turn_sends_one_message_of_acknowledgements_then_the_replies():
    tickets = joined()
    turn = Turn(owner="receiver")
    for request_id, verb in ((b"1", wire.DONE), (b"2", wire.CLOSE), (b"3", wire.DONE)):
        ticket = tickets.take(request_id)
        turn.reply(("reply", request_id))
        turn.ended(verb, ticket)
    acks, replies = turn.take(tickets)
    assert wire.parse_acks(acks) == [(wire.DONE, b"1"), (wire.CLOSE, b"2"), (wire.DONE, b"3")]
    assert replies == [("reply", b"1"), ("reply", b"2"), ("reply", b"3")]
    assert tickets.held == 0
    assert turn.take(tickets) == ([], [])  # taken once


def test_a_request_that_made_no_reply_is_acknowledged_alone():
    tickets = joined()
    turn = Turn(owner="receiver")
    turn.reply(("reply", b"1"))
    turn.ended(wire.DONE, tickets.take(b"1"))
    turn.ended(wire.DONE, tickets.take(b"2"))  # withheld at the door, or a notice: no reply
    acks, replies = turn.take(tickets)
    assert wire.parse_acks(acks) == [(wire.DONE, b"1"), (wire.DONE, b"2")]
    assert replies == [("reply", b"1")]


def test_who_of_the_same_instance_later_in_the_turn_withholds_the_replies_it_holds():
    """The reply was made before the WHO, but goes out after it: it is decided at sending."""
    tickets = joined()
    turn = Turn(owner="receiver")
    turn.reply(("reply", b"1"))
    turn.ended(wire.DONE, tickets.take(b"1"))
    tickets.who(OLD)  # taken for dead: request 1 went to another handler
    acks, replies = turn.take(tickets)
    assert replies == []
    assert wire.parse_acks(acks) == [(wire.DONE, wire.NO_REQUEST)]  # its credit, naming nothing


def test_who_of_a_new_instance_later_in_the_turn_lets_the_replies_out():
    tickets = joined()
    turn = Turn(owner="receiver")
    turn.reply(("reply", b"1"))
    turn.ended(wire.DONE, tickets.take(b"1"))
    tickets.who(NEW)  # the dispatcher restarted: the client still waits, nobody repeated it
    acks, replies = turn.take(tickets)
    assert replies == [("reply", b"1")]
    assert wire.parse_acks(acks) == [(wire.DONE, wire.NO_REQUEST)]


def test_a_turn_is_full_at_the_wires_bound():
    tickets = joined()
    turn = Turn(owner="receiver")
    for n in range(1, wire.ACKS_PER_MESSAGE + 1):
        assert not turn.full
        turn.ended(wire.DONE, tickets.take(b"%d" % n))
    assert turn.full
    acks, _ = turn.take(tickets)
    assert len(wire.parse_acks(acks)) == wire.ACKS_PER_MESSAGE and not turn.full
