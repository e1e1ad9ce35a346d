"""The dispatcher's ceiling: requests per second it moves on one CPU, and its CPU-µs each.

A benchmark, not a test (`make bench-dispatch`). The real dispatcher process
(m2stack.run_dispatcher) pinned to one CPU; on the other, this process plays mongrel2
(a bound PUSH socket sending real request messages, JSON headers as mongrel2 1.12 sends
them, over many connections) and HANDLERS handlers (DEALER sockets that acknowledge each
request at once, as a handler with free time would). Every request is acknowledged, so the
figure includes the whole dispatcher protocol: take, decide, hand out, acknowledge.

    python3 loadtest/dispatch_bench.py [--requests N] [--handlers K] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 2000  # distinct client connections the requests come from


def request_message(sender: bytes, conn_id: int) -> bytes:
    headers = (b'{"PATH":"/plaintext","x-forwarded-for":"10.0.0.1","host":"localhost:6767",'
               b'"user-agent":"wrk","accept":"*/*","METHOD":"GET","VERSION":"HTTP/1.1",'
               b'"URI":"/plaintext","PATTERN":"/","URL_SCHEME":"http","REMOTE_ADDR":"10.0.0.1"}')
    return b"%b %d /plaintext %d:%b,0:," % (sender, conn_id, len(headers), headers)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_round(requests: int, handlers: int, dispatcher_cpu: int, own_cpu: int) -> dict:
    context = zmq.Context()
    push_port, sub_port, bind_port = free_port(), free_port(), free_port()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.bind(f"tcp://127.0.0.1:{push_port}")
    sub = context.socket(zmq.SUB)  # where the dispatcher's own answers (503s) would go
    sub.bind(f"tcp://127.0.0.1:{sub_port}")
    heartbeat = Path(tempfile.mkdtemp()) / "heartbeat"
    env = dict(os.environ, M2_REQUESTS_ENDPOINT=f"tcp://127.0.0.1:{push_port}",
               M2_RESPONSES_ENDPOINT=f"tcp://127.0.0.1:{sub_port}", DISPATCH_BIND=f"tcp://127.0.0.1:{bind_port}",
               DISPATCH_HEARTBEAT_FILE=str(heartbeat), LOG_LEVEL="WARNING", M2_FRONTS_REFRESH="0",
               PYTHONPATH=str(ROOT / "services"))
    dispatcher = subprocess.Popen([sys.executable, "-c",
                                   f"import os, sys; os.sched_setaffinity(0, {{{dispatcher_cpu}}}); "
                                   "from m2stack.run_dispatcher import main; sys.exit(main())"], env=env)
    os.sched_setaffinity(0, {own_cpu})
    dealers = []
    for index in range(handlers):
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, b"bench-%d" % index)
        dealer.setsockopt(zmq.SNDHWM, 0)
        dealer.setsockopt(zmq.RCVHWM, 0)
        dealer.connect(f"tcp://127.0.0.1:{bind_port}")
        dealer.send(b"HELLO 1000 1000")
        dealers.append(dealer)
    poller = zmq.Poller()
    for dealer in dealers:
        poller.register(dealer, zmq.POLLIN)
    try:
        deadline = time.monotonic() + 15
        while not heartbeat.exists():
            if time.monotonic() > deadline or dispatcher.poll() is not None:
                raise SystemExit("the dispatcher did not start")
            time.sleep(0.05)
        time.sleep(0.5)  # its PULL connected, the handlers joined
        sender = b"bench-front"
        messages = [request_message(sender, conn) for conn in range(CONNECTIONS)]
        cpu_before = cpu_seconds(dispatcher.pid)
        started = time.perf_counter()
        sent = received = 0
        while received < requests:
            while sent < requests and sent - received < 4000:  # keep it fed, not flooded
                push.send(messages[sent % CONNECTIONS], zmq.NOBLOCK)
                sent += 1
            for dealer, _ in poller.poll(100):
                while True:
                    try:
                        frame = dealer.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if frame.startswith(b"REQ "):
                        dealer.send(b"DONE " + frame.split(b" ", 2)[1], zmq.NOBLOCK)
                        received += 1
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(dispatcher.pid) - cpu_before
    finally:
        dispatcher.terminate()
        dispatcher.wait(15)
        context.destroy(linger=0)
    return {"rate": requests / elapsed, "cpu_us": cpu / requests * 1e6, "cpu_share": cpu / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--handlers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    dispatcher_cpu, own_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    rounds = [one_round(args.requests, args.handlers, dispatcher_cpu, own_cpu) for _ in range(args.rounds)]
    rates = [r["rate"] for r in rounds]
    cpu = [r["cpu_us"] for r in rounds]
    print(f"dispatcher on 1 CPU, {args.handlers} handlers acknowledging at once, "
          f"{args.requests} requests x {args.rounds} rounds over {CONNECTIONS} connections")
    print("| round | requests/s | dispatcher CPU-µs per request | dispatcher CPU busy |")
    print("| ---: | ---: | ---: | ---: |")
    for index, r in enumerate(rounds, 1):
        print(f"| {index} | {r['rate']:,.0f} | {r['cpu_us']:.1f} | {r['cpu_share']:.0%} |")
    print(f"median {statistics.median(rates):,.0f} req/s (spread {min(rates):,.0f}-{max(rates):,.0f}), "
          f"{statistics.median(cpu):.1f} CPU-µs per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
