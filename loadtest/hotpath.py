#!/usr/bin/env python3
"""`make bench`: what each step of one request costs, in µs, on each hub.

Runs inside a handler image (the real hub, the real package), monkey-patched first:

    python3 hotpath.py --hub gevent [--json]

Each step is timed in a loop (`timeit`, `--repeat` rounds of `--number` calls; the table
shows the median round and the spread of all rounds). The steps are those of
doors/mongrel2/ for one `GET /plaintext`: parse the Mongrel2 message, build the app's
request, run the app (route, endpoint, metrics, final headers), render the HTTP bytes,
frame them for mongrel2, write the access line; then the hub's own work: a pooled
greenlet per request against serving where received (hubs/handoff.py), the deadline
registration, a receive and a send on ZeroMQ, and the whole cycle of one request through
the door over in-process sockets, both ways. A benchmark, not a
test: it asserts nothing. The standard library's timeit, not pyperf, so that it runs in
the production images, which carry no benchmark tool.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
import timeit

HUB = "gevent"
for i, arg in enumerate(sys.argv):
    if arg == "--hub" and i + 1 < len(sys.argv):
        HUB = sys.argv[i + 1]
if HUB == "gevent":
    from gevent import monkey

    monkey.patch_all()
elif HUB == "eventlet":
    import eventlet

    eventlet.monkey_patch()
else:
    raise SystemExit(f"--hub must be gevent or eventlet, got {HUB!r}")

os.environ.setdefault("METRICS_PORT", "0")

from m2stack import logs  # noqa: E402
from m2stack.app import App  # noqa: E402
from m2stack.demo.basics import routes  # noqa: E402
from m2stack.doors.mongrel2 import core, driver  # noqa: E402
from m2stack.doors.mongrel2.fronts import Front  # noqa: E402
from m2stack.hubs import load  # noqa: E402
from m2stack.protocol import mongrel2 as protocol  # noqa: E402
from m2stack.settings import HandlerSettings  # noqa: E402

hub = load(HUB)
zmq = hub.zmq

SENDER = b"4e2b8f0c-1d7a-4c3e-8a55-6b0d9c7e3f12"
HEADERS = {"PATH": "/plaintext", "x-forwarded-for": "127.0.0.1", "host": "127.0.0.1:6767",
           "user-agent": "wrk", "accept": "*/*", "METHOD": "GET", "VERSION": "HTTP/1.1",
           "URI": "/plaintext", "PATTERN": "/", "URL_SCHEME": "http", "REMOTE_ADDR": "127.0.0.1"}
RAW_JSON = protocol.encode_request(SENDER, 12, "/plaintext", HEADERS, b"", "json")
RAW_TNET = protocol.encode_request(SENDER, 12, "/plaintext", HEADERS, b"", "tnetstring")


def measure(function, number: int, repeat: int, setup=lambda: None) -> dict:
    # CPU time of this process, not wall time: other load on the machine does not count.
    # `setup` runs before each round, untimed.
    timer = timeit.Timer(function, setup=setup, timer=time.process_time)
    rounds = [t / number * 1e6 for t in timer.repeat(repeat=repeat, number=number)]
    return {"us": round(statistics.median(rounds), 2), "min": round(min(rounds), 2),
            "max": round(max(rounds), 2)}


def steps(number: int, repeat: int) -> list[tuple[str, dict]]:
    app = App(routes, hub_name=hub.NAME, front_door="mongrel2")
    message = protocol.parse_request(RAW_JSON, core.decode_headers)
    request = core.build_request(message)
    response = app.handle(core.build_request(message))
    wire = core.render(response, close=False, version="HTTP/1.1")
    access = logs.AccessLog(stream=io.BytesIO(), max_lines=10**9)
    deadlines: dict = {}

    def deadline_watchdog() -> None:
        me = hub.current()
        deadlines[me] = 1.0
        deadlines.pop(me, None)

    def deadline_timer() -> None:
        with hub.Timeout(10):
            pass

    pool = hub.make_pool(10_000)

    def spawn_many(function=int, *args) -> None:
        for _ in range(100):
            hub.spawn(pool, function, *args)
        while pool.running():
            hub.sleep(0)

    left = [0]

    def receive_waiting() -> None:
        # the door's receive loop, with a request that waits once (a query, say)
        while left[0]:
            left[0] -= 1
            if not hub.serve_here(pool, receive_waiting, hub.sleep, 0):
                return  # it waited: another receiver was started at that switch

    def serve_many_waiting() -> None:
        left[0] = 100
        receive_waiting()
        while left[0] or pool.running():
            hub.sleep(0)

    out = [
        ("parse (JSON headers, msgspec)", measure(lambda: protocol.parse_request(RAW_JSON, core.decode_headers),
                                                  number, repeat)),
        ("parse (tnetstring headers, pure)", measure(lambda: protocol.parse_request(RAW_TNET), number, repeat)),
        ("build the request", measure(lambda: core.build_request(message), number, repeat)),
        ("app: route, endpoint, metrics, headers", measure(lambda: app.handle(core.build_request(message)),
                                                           number, repeat)),
        ("render HTTP", measure(lambda: core.render(response, close=False, version="HTTP/1.1"), number, repeat)),
        ("frame for mongrel2", measure(lambda: protocol.frame_one(message.sender, message.conn_id, wire),
                                       number, repeat)),
        ("access log line", measure(lambda: access.write({
            "request_id": request.request_id, "conn_id": "12", "method": "GET", "path": "/plaintext",
            "status": 200, "duration_ms": 0.12}), number, repeat)),
        ("deadline: watchdog registration", measure(deadline_watchdog, number, repeat)),
        ("deadline: a timer per request (not used)", measure(deadline_timer, number, repeat)),
    ]
    def per_request(hundred) -> dict:  # `hundred` runs 100 requests
        return {k: round(v / 100, 2) for k, v in measure(hundred, max(1, number // 100), repeat).items()}

    # The greenlet-per-request figures first: `install_handoff` hooks every greenlet switch
    # for the rest of the process, and a handler that spawns a greenlet per request
    # (HANDLER_SERVE_INLINE=false) never installs it.
    spawned = per_request(spawn_many)
    waits_spawned = per_request(lambda: spawn_many(hub.sleep, 0))
    context = zmq.Context()
    receive, sent = zmq_steps(context, number, repeat)
    door_spawned = door_cycle(context, number, repeat, inline=False)
    hub.install_handoff()  # as the door does when it serves where received (the default)
    here = measure(lambda: hub.serve_here(pool, int, int), number, repeat)
    waits_here = per_request(serve_many_waiting)
    door_inline = door_cycle(context, number, repeat, inline=True)
    context.term()
    return out + [
        ("hub: pooled greenlet spawn, run, exit", spawned),
        ("hub: served where received (a place in the pool, no switch)", here),
        ("hub: a request that waits once, spawned", waits_spawned),
        ("hub: a request that waits once, served here", waits_here),
        ("hub: receive one message (ZeroMQ, non-blocking + FD)", receive),
        ("hub: send one message (ZeroMQ)", sent),
        ("whole cycle through the door, a greenlet per request", door_spawned),
        ("whole cycle through the door, served where received (default)", door_inline)]


def zmq_steps(context, number: int, repeat: int) -> tuple[dict, dict]:
    """A receive and a send on plain pyzmq through the hub, per message."""
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    for sock in (pull, push):
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
    pull.bind("inproc://bench-requests")
    push.connect("inproc://bench-requests")

    def fill() -> None:
        for _ in range(number):
            push.send(RAW_JSON)

    def receive_all() -> None:
        for _ in range(number):
            hub.receive(pull, 1.0)

    def empty() -> None:
        while hub.receive(pull, 0.01) is not None:
            pass

    receive = {k: round(v / number, 2) for k, v in measure(receive_all, 1, repeat, setup=fill).items()}
    sent = {k: round(v / number, 2) for k, v in measure(lambda: [hub.send(push, RAW_JSON) for _ in range(number)],
                                                         1, repeat, setup=empty).items()}
    empty()
    for sock in (pull, push):
        sock.close(0)
    return receive, sent


def door_cycle(context, number: int, repeat: int, *, inline: bool, calls: bool = False) -> dict:
    """Requests pushed into a front's PULL socket, answered by the door's own code, the
    replies read back: everything of one request but the TCP hop to mongrel2. `inline`:
    each served in the receiving greenlet (the door's default), else a greenlet each.
    `calls`: count the function calls per request (`count_calls`) instead of timing."""
    os.environ["ACCESS_LOG"] = "false"
    app = App(routes, hub_name=hub.NAME, front_door="mongrel2")
    the_door = driver.Mongrel2Door(hub, app, HandlerSettings(access_log=False, request_timeout=10.0,
                                                             serve_inline=inline))
    the_door.intake.start()  # serving where received: the hand-off hook, as the door installs it
    requests_in, replies_out = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    front_requests, front_replies = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    for sock in (requests_in, replies_out, front_requests, front_replies):
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
    name = "inline" if inline else "spawned"
    front_requests.bind(f"inproc://bench-front-requests-{name}")
    requests_in.connect(f"inproc://bench-front-requests-{name}")
    replies_out.bind(f"inproc://bench-front-replies-{name}")
    front_replies.connect(f"inproc://bench-front-replies-{name}")
    front = Front("", f"inproc://bench-front-requests-{name}", f"inproc://bench-front-replies-{name}",
                  front_requests, front_replies)
    front.idents.add(b"")  # a PUSH stands in for mongrel2's SUB: it takes every reply
    hub.spawn_background(the_door.watch_deadlines)

    batch = 64  # requests in flight at once, as under a 64-connection load

    def no_hand_off() -> None:
        pass  # nothing else receives here: the return value says whether it waited

    def cycle() -> None:
        for _ in range(number // batch):
            for _ in range(batch):
                requests_in.send(RAW_JSON)
            for _ in range(batch):
                raw = hub.receive(front_requests, 1.0)
                if inline:
                    if not the_door.intake.serve_here(raw, front, no_hand_off):
                        raise RuntimeError("a /json request waited")
                else:
                    the_door.intake.spawn(raw, front)
            for _ in range(batch):
                if hub.receive(replies_out, 5.0) is None:
                    raise RuntimeError("a reply went missing")

    done = number // batch * batch
    if calls:
        result = count_calls(cycle, done)
    else:
        result = {k: round(v / done, 2) for k, v in measure(cycle, 1, repeat).items()}
    the_door.stopping = True
    hub.sleep(0.2)
    for sock in (requests_in, replies_out, front_requests, front_replies):
        sock.close(0)
    return result


def count_calls(function, requests: int) -> dict:
    """The calls `function` makes per request, by cProfile: those of Python functions
    (each a frame) and of built-in ones. Unlike time, a count does not move with the load
    on the machine, so it compares two trees on a busy one. It includes the benchmark's
    own calls around the door (pushing a request, reading its reply), the same in every
    tree."""
    function()  # once unprofiled: what happens only the first time is not per request
    profile = cProfile.Profile()
    profile.runcall(function)
    python = builtin = 0
    for (filename, _, _), (_, count, *_) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        if filename == "~":
            builtin += count
        else:
            python += count
    return {"python": round(python / requests, 2), "builtin": round(builtin / requests, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub", default="gevent")
    parser.add_argument("--number", type=int, default=5000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds")
    parser.add_argument("--json", action="store_true", help="JSON rows on stdout (the table on stderr)")
    parser.add_argument("--calls", action="store_true",
                        help="no timing: the function calls of one request through the door (cProfile)")
    args = parser.parse_args()
    if args.calls:
        context = zmq.Context()
        for inline in (False, True):  # a greenlet each first: serving here hooks every switch from then on
            counted = door_cycle(context, args.number, 1, inline=inline, calls=True)
            print(json.dumps({"hub": HUB, "step": "calls per request, " + ("served where received" if inline
                              else "a greenlet per request"), **counted}))
        return 0
    started = time.monotonic()
    rows = [{"hub": HUB, "step": step, **figures} for step, figures in steps(args.number, args.repeat)]
    table = sys.stderr if args.json else sys.stdout  # with --json the rows go to stdout
    print(f"{'step':58s} {HUB + ' µs':>12s}  spread", file=table)
    for row in rows:
        print(f"{row['step']:58s} {row['us']:12.2f}  {row['min']:.2f}-{row['max']:.2f}", file=table)
    print(f"({args.repeat} rounds of {args.number}, CPU time, {time.monotonic() - started:.0f} s)", file=table)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
