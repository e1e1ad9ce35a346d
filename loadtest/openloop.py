#!/usr/bin/env python3
"""An open-loop load generator: requests at a fixed arrival rate, whatever the server does,
each one's latency measured from when it was due (wrk2's correction for coordinated
omission). A closed-loop client (Locust, wrk) waits for an answer before it asks again, so
a server that stalls is asked less often while it stalls and its p99 looks better than its
users see it; here a stall keeps requests arriving, they wait, and the wait is counted.

    python3 openloop.py URL RATE SECONDS [CONNECTIONS]

Request i is due at start + i / RATE. It goes out on the first free keep-alive connection
(at most CONNECTIONS open); when none is free it waits for one, and that wait is part of
its latency, as it would be a user's. Prints one line, `OPENLOOP_JSON {...}`: requests,
errors, the rate asked for and the rate achieved, percentiles from the due time and from
the send time, and how late the generator itself was to send (its own lag: when that is
large, the generator and not the server set the pace, and the run says so).

Standard library only (asyncio, raw HTTP/1.1): it runs in the Locust image.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

TIMEOUT = 10.0


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


class Connections:
    """Keep-alive connections, opened as needed up to `limit`, handed out one at a time."""

    def __init__(self, host: str, port: int, limit: int):
        self.host, self.port, self.limit = host, port, limit
        self.free: asyncio.Queue = asyncio.Queue()
        self.opened = 0

    async def take(self):
        if self.free.empty() and self.opened < self.limit:
            self.opened += 1
            try:
                return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), TIMEOUT)
            except BaseException:
                self.opened -= 1
                raise
        return await self.free.get()

    def give_back(self, connection) -> None:
        self.free.put_nowait(connection)

    def drop(self, connection) -> None:
        self.opened -= 1
        connection[1].close()


async def exchange(connection, request: bytes) -> int:
    reader, writer = connection
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def run(url: str, rate: float, seconds: float, limit: int) -> dict:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}\r\n\r\n".encode()
    pool = Connections(parts.hostname, parts.port or 80, limit)
    from_due: list[float] = []
    from_send: list[float] = []
    lag: list[float] = []
    errors = {"connect": 0, "status": 0, "timeout": 0, "closed": 0}

    async def one(due: float) -> None:
        try:
            connection = await pool.take()
        except OSError:  # TimeoutError is one
            errors["connect"] += 1
            return
        sent = time.perf_counter()
        try:
            status = await asyncio.wait_for(exchange(connection, request), TIMEOUT)
        except TimeoutError:
            errors["timeout"] += 1
            pool.drop(connection)
            return
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors["closed"] += 1
            pool.drop(connection)
            return
        done = time.perf_counter()
        pool.give_back(connection)
        if status != 200:
            errors["status"] += 1
            return
        from_due.append(done - due)
        from_send.append(done - sent)

    tasks = set()
    start = time.perf_counter() + 0.05
    total = int(rate * seconds)
    cpu_before = time.process_time()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.append(max(0.0, time.perf_counter() - due))
        task = asyncio.ensure_future(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_by = time.perf_counter()
    if tasks:
        await asyncio.wait(tasks, timeout=TIMEOUT + 5)
    ended = time.perf_counter()
    cpu = time.process_time() - cpu_before
    from_due.sort()
    from_send.sort()
    lag.sort()
    ms = 1000.0
    return {
        "rate_asked": rate, "seconds": seconds, "connections": limit, "requests": len(from_due),
        "errors": sum(errors.values()), "errors_by_kind": errors,
        "rate_sent": round(total / (sent_by - start), 1) if sent_by > start else None,
        "rate_answered": round(len(from_due) / (ended - start), 1),
        "avg_ms": round(sum(from_due) / len(from_due) * ms, 2) if from_due else None,
        **{f"p{label}_ms": round(percentile(from_due, f) * ms, 2) if from_due else None
           for label, f in (("50", 0.5), ("90", 0.9), ("95", 0.95), ("99", 0.99), ("999", 0.999),
                            ("100", 1.0))},
        "p99_from_send_ms": round(percentile(from_send, 0.99) * ms, 2) if from_send else None,
        "generator_lag_p99_ms": round(percentile(lag, 0.99) * ms, 2) if lag else None,
        "generator_cpu_s": round(cpu, 2),
        "connections_opened": pool.opened,
    }


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    url, rate, seconds = argv[1], float(argv[2]), float(argv[3])
    limit = int(argv[4]) if len(argv) > 4 else 64
    if rate <= 0 or seconds <= 0 or limit < 1:
        print("RATE and SECONDS must be positive, CONNECTIONS at least 1", file=sys.stderr)
        return 2
    print("OPENLOOP_JSON " + json.dumps(asyncio.run(run(url, rate, seconds, limit))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
