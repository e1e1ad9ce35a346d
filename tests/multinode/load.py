"""A client outside the nodes: workers per front, each on a fresh connection per request,
alternating a GET (safe to repeat: the dispatcher repeats it when its handler dies) and a
POST (not: the dispatcher answers it 503 instead). Every answer must carry what was sent,
so a reply delivered to the wrong client counts as a failure, never as a success.

Threads, not asyncio: a dozen workers, and a blocked connect must not stall the others.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

# Longer than the stack's M2_IDLE_TIMEOUT (20 s) + 2 s: a request a front lost is closed by
# its reaper and counted as closed; only a front that is gone leaves its clients waiting.
READ_TIMEOUT = 25.0
CONNECT_TIMEOUT = 5.0


@dataclass
class Outcome:
    front: str
    method: str
    began: float       # wall clock
    seconds: float
    status: int | None  # None: no answer
    kind: str          # "ok", "status", "body", "mismatch", "timeout", "closed", "connect"
    handler: str = ""  # X-Handler-Id of an answer
    detail: str = ""   # what went wrong


@dataclass
class Load:
    fronts: list[str]
    workers_per_front: int = 6
    ms: int = 50
    port: int = 6767
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for front in self.fronts:
            for i in range(self.workers_per_front):
                thread = threading.Thread(target=self._work, args=(front, i), daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(READ_TIMEOUT + CONNECT_TIMEOUT + 5)
        return self.outcomes

    def since(self, when: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.began >= when]

    def ok_through(self, front: str, since: float) -> int:
        return sum(o.kind == "ok" for o in self.since(since) if o.front == front)

    def _work(self, front: str, index: int) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1
            outcome = self._one(front, "GET" if (count + index) % 2 else "POST")
            with self._lock:
                self.outcomes.append(outcome)
            if outcome.kind == "connect":
                time.sleep(0.2)  # a front that refuses: do not spin

    def _one(self, front: str, method: str) -> Outcome:
        token = uuid.uuid4().hex
        ms = self.ms + int(token[:2], 16) % 20  # the GET's token: its answer must name it
        began, start = time.time(), time.monotonic()
        connection = http.client.HTTPConnection(front, self.port, timeout=CONNECT_TIMEOUT)
        try:
            try:
                connection.connect()
            except OSError as exc:
                return Outcome(front, method, began, time.monotonic() - start, None, "connect", detail=repr(exc))
            connection.sock.settimeout(READ_TIMEOUT)
            headers = {"Connection": "close"}
            if method == "GET":
                connection.request("GET", f"/sleep?ms={ms}", headers=headers)
            else:
                body = json.dumps({"token": token})
                connection.request("POST", f"/echo?ms={ms}", body=body,
                                   headers={**headers, "Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            seconds = time.monotonic() - start
            handler = response.getheader("X-Handler-Id", "")
            if response.status != 200:
                return Outcome(front, method, began, seconds, response.status, "status", handler,
                               data[:200].decode("latin-1"))
            try:
                document = json.loads(data)
                echoed = document["slept_ms"] if method == "GET" else document["received"]["token"]
            except (ValueError, KeyError, TypeError):
                return Outcome(front, method, began, seconds, response.status, "body", handler,
                               data[:200].decode("latin-1"))
            if echoed != (ms if method == "GET" else token):
                return Outcome(front, method, began, seconds, response.status, "mismatch", handler, repr(echoed))
            return Outcome(front, method, began, seconds, 200, "ok", handler)
        except TimeoutError:
            return Outcome(front, method, began, time.monotonic() - start, None, "timeout")
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            return Outcome(front, method, began, time.monotonic() - start, None, "closed", detail=repr(exc))
        finally:
            connection.close()


def summary(outcomes: list[Outcome]) -> dict:
    """Per front: answered, failed by kind and method, the slowest wait."""
    fronts: dict[str, dict] = {}
    for o in outcomes:
        s = fronts.setdefault(o.front, {"ok": 0, "failed": {}, "slowest_s": 0.0})
        if o.kind == "ok":
            s["ok"] += 1
        else:
            key = f"{o.method} {o.kind}{'' if o.status is None else ' ' + str(o.status)}"
            s["failed"][key] = s["failed"].get(key, 0) + 1
        s["slowest_s"] = round(max(s["slowest_s"], o.seconds), 2)
    return fronts
