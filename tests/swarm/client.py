"""An HTTP client that runs INSIDE the stack's overlay network (a one-off container), so it
reaches every front at its task address: the only way to tell the fronts apart, and the
only way at all on a host without IPVS (no VIPs, no routing mesh).

Standard library only (asyncio), passed to `python3 -c` in the handler image. Every
request is `POST /echo` with a unique token, on a fresh connection; the response must echo
that token, else it was delivered to the wrong client. Prints one JSON document.

    burst NAME PORT N        N requests in flight at once, spread over the addresses NAME
                             resolves to (connections opened first, then every request sent)
    load NAME PORT C [MS]    C workers per front (each request answered after MS ms), until a
                             line arrives on stdin; NAME is resolved again every 0.5 s:
                             workers follow fronts that come and go.
                             Every 0.5 s a progress line (`{"progress": ...}`) so the test can
                             wait on what the load sees; the report is the last line.
"""

import asyncio
import json
import socket
import sys
import time
import uuid

TIMEOUT = 20.0  # longer than M2_IDLE_TIMEOUT + 2 s: a lost request is closed, not timed out
MAX_FAILURES_LISTED = 40


def resolve(name):
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)})
    except OSError:
        return []


class Results:
    def __init__(self):
        self.fronts = {}
        self.failures = []
        self.mismatched = 0
        self.started = time.time()
        self.in_flight = {}  # request token -> when it was sent (wall clock)

    def front(self, address):
        return self.fronts.setdefault(address, {"ok": 0, "failed": 0, "first_ok": None, "last_ok": None,
                                                "first_failed": None, "last_failed": None, "handlers": {}})

    def ok(self, address, handler, latency):
        stats = self.front(address)
        now = time.time()
        stats["ok"] += 1
        stats["first_ok"] = stats["first_ok"] or now
        stats["last_ok"] = now
        stats["handlers"][handler] = stats["handlers"].get(handler, 0) + 1
        stats.setdefault("ok_times", []).append(round(now, 3))
        stats.setdefault("slowest", 0.0)
        stats["slowest"] = max(stats["slowest"], latency)

    def failed(self, address, kind, detail):
        stats = self.front(address)
        now = time.time()
        stats["failed"] += 1
        stats["first_failed"] = stats["first_failed"] or now
        stats["last_failed"] = now
        if kind == "mismatch":
            self.mismatched += 1
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append({"front": address, "time": now, "kind": kind, "detail": detail[:200]})

    def progress(self):
        """What the test waits on: counts, the handlers seen per front, and when the oldest
        request still in flight was sent (None: nothing in flight)."""
        return {"time": time.time(), "ok": sum(s["ok"] for s in self.fronts.values()),
                "failed": sum(s["failed"] for s in self.fronts.values()),
                "fronts": {a: {"ok": s["ok"], "failed": s["failed"], "handlers": sorted(s["handlers"])}
                           for a, s in self.fronts.items()},
                "oldest_in_flight": min(self.in_flight.values(), default=None)}

    def report(self, **extra):
        total_ok = sum(s["ok"] for s in self.fronts.values())
        total_failed = sum(s["failed"] for s in self.fronts.values())
        return dict(extra, ok=total_ok, failed=total_failed, mismatched=self.mismatched,
                    started=self.started, ended=time.time(), fronts=self.fronts, failures=self.failures)


def request_bytes(token, ms=0):
    body = json.dumps({"token": token}).encode()
    path = f"/echo?ms={ms}".encode() if ms else b"/echo"
    return (b"POST " + path + b" HTTP/1.1\r\nHost: front\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def check(results, address, token, status, headers, body, began):
    if status != 200:
        results.failed(address, "status", f"{status} {body[:120]!r}")
        return
    try:
        received = json.loads(body)["received"]["token"]
    except (ValueError, KeyError, TypeError):
        results.failed(address, "body", repr(body[:120]))
        return
    if received != token:
        results.failed(address, "mismatch", f"sent {token}, got {received}")
        return
    results.ok(address, headers.get("x-handler-id", "?"), time.monotonic() - began)


async def one(results, address, port, token=None, ms=0):
    token = token or uuid.uuid4().hex
    began = time.monotonic()
    results.in_flight[token] = time.time()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
        writer.write(request_bytes(token, ms))
        status, headers, body = await asyncio.wait_for(read_response(reader), TIMEOUT)
        check(results, address, token, status, headers, body, began)
    except TimeoutError:
        results.failed(address, "timeout", f"no answer within {time.monotonic() - began:.1f}s")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        results.failed(address, "closed", f"{type(exc).__name__} after {time.monotonic() - began:.2f}s")
    except OSError as exc:
        results.failed(address, "connect", f"{type(exc).__name__}: {exc}")
    finally:
        results.in_flight.pop(token, None)
        if writer is not None:
            writer.close()


async def burst(name, port, n):
    addresses = resolve(name)
    if not addresses:
        return {"error": f"{name} resolves to nothing"}
    results = Results()
    targets = [addresses[i % len(addresses)] for i in range(n)]
    connections = await asyncio.gather(*(asyncio.wait_for(asyncio.open_connection(a, port), 10) for a in targets),
                                       return_exceptions=True)
    go = asyncio.Event()

    async def send(address, connection):
        if isinstance(connection, BaseException):
            results.failed(address, "connect", repr(connection))
            return
        reader, writer = connection
        token = uuid.uuid4().hex
        await go.wait()
        began = time.monotonic()
        try:
            writer.write(request_bytes(token))
            status, headers, body = await asyncio.wait_for(read_response(reader), TIMEOUT)
            check(results, address, token, status, headers, body, began)
        except TimeoutError:
            results.failed(address, "timeout", "no answer")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            results.failed(address, "closed", type(exc).__name__)
        finally:
            writer.close()

    tasks = [asyncio.ensure_future(send(a, c)) for a, c in zip(targets, connections, strict=True)]
    await asyncio.sleep(0.2)  # every task parked on `go`
    began = time.monotonic()
    go.set()
    await asyncio.gather(*tasks)
    return results.report(addresses=addresses, in_flight=n, seconds=round(time.monotonic() - began, 3))


async def load(name, port, concurrency, ms=0):
    results = Results()
    stop = asyncio.Event()
    workers = {}  # address -> its workers, while DNS lists it
    every = []    # every worker ever started, to wait for at the end
    seen = []

    async def worker(address):
        while not stop.is_set() and address in workers:
            await one(results, address, port, ms=ms)

    async def follow():
        while not stop.is_set():
            current = resolve(name)
            if current:  # a failed look-up keeps the workers as they are
                for address in current:
                    if address not in workers:
                        seen.append({"address": address, "time": time.time()})
                        results.front(address)
                        workers[address] = [asyncio.ensure_future(worker(address)) for _ in range(concurrency)]
                        every.extend(workers[address])
                for address in list(workers):
                    if address not in current:
                        workers.pop(address)  # its workers end after their current request
            print(json.dumps({"progress": results.progress()}), flush=True)
            await asyncio.sleep(0.5)

    follower = asyncio.ensure_future(follow())
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    stop.set()
    await follower
    await asyncio.gather(*every, return_exceptions=True)
    return results.report(seen=seen, concurrency=concurrency, ms=ms)


def main(argv):
    mode, name, port, count = argv[1], argv[2], int(argv[3]), int(argv[4])
    if mode == "burst":
        report = asyncio.run(burst(name, port, count))
    else:
        report = asyncio.run(load(name, port, count, int(argv[5]) if len(argv) > 5 else 0))
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv)
