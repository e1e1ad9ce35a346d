"""WebSocket demo: /ws/echo and /ws/chat.

/ws/echo sends every message back as it came (text as text, binary as binary).

/ws/chat: a text message from any client reaches every client of the chat once, whichever
handler process (and front) holds it. Mongrel2 round-robins every WebSocket frame, and its
disconnect notices, over all handlers, so:

- the handler that answered a client's handshake owns it (`on_open` runs there): only it
  keeps the client's connection object, and only it sends to the client;
- a message, wherever it arrives, is published with PostgreSQL's NOTIFY on one channel;
  every handler LISTENs on it and sends the message to its own members: each client gets it
  exactly once (from its owner);
- joins and leaves are published the same way, so every handler knows which connection ids
  are chat members, and a disconnect notice that reaches a handler that is not the owner is
  passed on (a notice for a plain HTTP connection costs a set lookup, no NOTIFY).

NOTIFY payloads are limited to 8000 bytes by PostgreSQL: chat messages are limited to
`MAX_CHAT_MESSAGE` bytes (a larger one is refused with close code 1009).
The LISTEN connection is a psycopg2 connection of its own (never one of the pool), made
cooperative by the wait callback the pool installs; `select` is the hub's (patched).
"""

from __future__ import annotations

import json
import logging
import select
import threading
import time
from typing import Any

from m2stack.app import Router
from m2stack.app.websocket import WebSocketConnection, WebSocketEndpoint

log = logging.getLogger("m2stack.demo.chat")

routes = Router()
CHANNEL = "m2stack_chat"
MAX_CHAT_MESSAGE = 4000
# Seconds the LISTEN greenlet waits after a wake-up so that a burst of notices reaches each
# member in one write: mongrel2 1.12 drops a connection (and discards what is queued for
# it) when 16 writes to it are still undelivered (src/connection.h:47, connection.c:135).
# One write per member per COALESCE keeps a member under that bound unless mongrel2 itself
# cannot write to the client for 16 rounds (a stalled client: dropping it is right).
COALESCE = 0.02


@routes.route("/ws/echo")
class Echo(WebSocketEndpoint):
    max_message = 4 << 20

    def on_message(self, message: str | bytes) -> None:
        self.connection.send(message)


class Room:
    """The chat members this process owns, and the keys of every member anywhere."""

    def __init__(self, pool: Any, hub: Any):
        self.pool = pool  # m2stack.db.Pool: NOTIFY goes through it
        self.hub = hub
        self.members: dict[str, WebSocketConnection] = {}
        self.everywhere: set[str] = set()
        self._listening = False
        self._starting = hub.make_semaphore(1)

    # -- publishing (any handler) ---------------------------------------------------------

    def publish(self, kind: str, **fields: Any) -> None:
        payload = json.dumps({"kind": kind, **fields}, separators=(",", ":"))
        with self.pool.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    def join(self, connection: WebSocketConnection) -> None:
        self.listen()
        self.members[connection.key] = connection
        self.everywhere.add(connection.key)
        self.publish("join", key=connection.key)

    def leave(self, key: str) -> None:
        if self.members.pop(key, None) is not None or key in self.everywhere:
            self.everywhere.discard(key)
            self.publish("leave", key=key)

    def gone(self, key: str) -> None:
        """Mongrel2's disconnect notice, wherever it arrived."""
        if key in self.members or key in self.everywhere:
            self.leave(key)

    # -- receiving (every handler, one greenlet) ------------------------------------------

    def listen(self) -> None:
        """Start the LISTEN greenlet once, lazily (after fork and monkey-patching)."""
        if self._listening:
            return
        self._starting.acquire()  # one LISTEN per process, or members would get messages twice
        try:
            if self._listening:
                return
            conn = self.pool._connect()  # a connection of its own, never back to the pool
            conn.cursor().execute(f"LISTEN {CHANNEL}")
            spawn = getattr(self.hub, "spawn_background", None)
            if spawn is not None:
                spawn(self._receive, conn)
            else:
                threading.Thread(target=self._receive, args=(conn,), daemon=True).start()
            self._listening = True
        finally:
            self._starting.release()

    def _receive(self, conn: Any) -> None:
        while True:
            try:
                ready, _, _ = select.select([conn], [], [], 5.0)
                if ready:
                    time.sleep(COALESCE)  # patched: parks this greenlet; more notices gather
                conn.poll()
            except Exception as exc:  # the server went away: listen again on a new connection
                log.warning("chat LISTEN connection lost", extra={"error": str(exc)[:200]})
                time.sleep(1.0)
                try:
                    conn = self.pool._connect()  # a connection of its own, never back to the pool
                    conn.cursor().execute(f"LISTEN {CHANNEL}")
                except Exception:
                    continue
                continue
            payloads = [notice.payload for notice in conn.notifies]
            conn.notifies.clear()
            if payloads:
                self.deliver(payloads)

    def deliver(self, payloads: list[str]) -> None:
        """Every notice one wake-up brought, in order; the chat messages among them go to
        each member in one write (mongrel2 drops a client with 16 undelivered writes)."""
        texts: list[str | bytes] = []
        for payload in payloads:
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            kind, key = event.get("kind"), event.get("key", "")
            if kind == "message":
                texts.append(str(event.get("text", "")))
            elif kind == "join":
                self.everywhere.add(key)
            elif kind == "leave":
                self.everywhere.discard(key)
                self.members.pop(key, None)
        if texts:
            for member_key, connection in list(self.members.items()):
                if not connection.send_many(texts):
                    self.members.pop(member_key, None)


@routes.route("/ws/chat")
class Chat(WebSocketEndpoint):
    max_message = MAX_CHAT_MESSAGE

    @property
    def room(self) -> Room:
        return self.app.state.chat

    def on_open(self) -> None:
        self.room.join(self.connection)

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.connection.close(1003, "the chat takes text messages")
            return
        self.room.publish("message", text=message)

    def on_close(self, code: int, reason: str) -> None:
        self.room.leave(self.connection.key)

    @classmethod
    def on_disconnect(cls, app: Any, key: str) -> None:
        room = getattr(app.state, "chat", None)
        if room is not None:
            room.gone(key)
