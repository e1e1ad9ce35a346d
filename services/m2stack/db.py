"""PostgreSQL for the app: one bounded pool of psycopg2 connections per process.

Why psycopg2 (binary wheel, libpq inside) with a wait callback: libpq is the reference
client, and psycopg2's `set_wait_callback` turns every libpq call (connect, query,
fetch) into non-blocking polls; the callback (`wait_for_db` of the hub the pool is built
on) parks only the calling greenlet on the socket while the hub runs others. One module
for both hubs; the hub decides how to wait.

libpq resolves host names with a blocking getaddrinfo(); the hub resolves the name first
(`hub.resolve`: the OS resolver, off the hub's thread) and libpq gets the address (`hostaddr`).

Failure policy: this module raises its own errors, and the app decides how to answer
them; every app m2stack builds answers them with `answer_unavailable` (503 JSON with
Retry-After) unless it registered an answer of its own (`App.answer_error`):
  - no free connection within DB_POOL_TIMEOUT seconds: `PoolExhausted`;
  - cannot connect, or the connection broke: `DatabaseUnavailable`; the broken
    connection and every idle one (they share its fate: a restarted server) are
    dropped, so the first request after the database returns gets a fresh connection;
  - any other error inside a transaction: ROLLBACK, nothing half-written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from m2stack.app import HTTPError
from m2stack.hubs import AppHub
from m2stack.settings import DatabaseSettings

log = logging.getLogger("m2stack.db")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


class DatabaseUnavailable(Exception):
    """No database for this request now; `message` and `details` say why."""

    message = "database unavailable"

    def __init__(self, details: dict[str, Any]):
        super().__init__(self.message, details)
        self.details = details


class PoolExhausted(DatabaseUnavailable):
    """Every connection of the pool stayed busy for DB_POOL_TIMEOUT seconds."""

    message = "database pool exhausted"


def answer_unavailable(exc: DatabaseUnavailable) -> HTTPError:
    """503 JSON with Retry-After: a busy pool or a restarting server may serve in a second."""
    return HTTPError(503, exc.message, details=exc.details, headers=[("Retry-After", "1")])


def unavailable(reason: str) -> DatabaseUnavailable:
    return DatabaseUnavailable({"reason": reason[:200]})


class Pool:
    """At most `pool_size` connections; idle ones are reused (LIFO), broken ones dropped."""

    def __init__(self, settings: DatabaseSettings, hub: AppHub):
        import psycopg2
        import psycopg2.extensions

        self.pg = psycopg2
        self.settings = settings
        self.hub = hub
        if self.hub.wait_for_db is not None:
            psycopg2.extensions.set_wait_callback(self.hub.wait_for_db)
        self._slots = self.hub.make_semaphore(settings.pool_size)
        self._idle: list[Any] = []
        self.opened = 0  # connections opened over the process's life (for tests and logs)

    # -- connections -------------------------------------------------------------------

    def _connect(self):
        s = self.settings
        try:
            with self.hub.Timeout(s.connect_timeout, unavailable("connect timed out")):
                # Cooperative resolution (patched by the hub); libpq's own would block.
                address = self.hub.resolve(s.host, s.port)[0]
                options = f"-c statement_timeout={s.statement_timeout_ms}"
                conn = self.pg.connect(host=s.host, hostaddr=address, port=s.port, dbname=s.name,
                                       user=s.user, password=s.password, options=options,
                                       application_name="m2stack", keepalives=1,
                                       keepalives_idle=10, keepalives_interval=5,
                                       keepalives_count=3)
        except (OSError, self.pg.Error) as exc:
            raise unavailable(_first_line(exc)) from None
        conn.autocommit = True  # reads are one statement each; `transaction()` adds BEGIN
        self.opened += 1
        return conn

    def _discard(self, conn) -> None:
        try:
            conn.close()
        except Exception:
            pass

    def _flush_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection for the duration of the block; DatabaseUnavailable when none can
        be had."""
        started = time.monotonic()
        if not self._slots.acquire(timeout=self.settings.pool_timeout):
            raise PoolExhausted({"pool_size": self.settings.pool_size,
                                 "waited_seconds": round(time.monotonic() - started, 3)})
        try:
            try:
                conn = self._idle.pop()  # one step, so safe under real threads too (granian)
            except IndexError:
                conn = self._connect()
            try:
                yield conn
            except (self.pg.OperationalError, self.pg.InterfaceError) as exc:
                if conn.closed:
                    # Lost the server: the idle ones most likely too (restart, failover).
                    self._discard(conn)
                    self._flush_idle()
                    log.warning("database connection lost", extra={"error": str(exc).strip()[:200]})
                    raise unavailable(_first_line(exc)) from None
                self._release(conn)  # e.g. statement_timeout: the connection is fine
                raise unavailable(_first_line(exc)) from None
            except BaseException:
                self._release(conn)  # handler error, or a deadline Timeout mid-query
                raise
            else:
                self._release(conn)
        finally:
            self._slots.release()

    def _release(self, conn) -> None:
        """Back to the idle list if it is open and outside any transaction, else closed."""
        extensions = self.pg.extensions
        if (not conn.closed and not conn.isexecuting()
                and conn.info.transaction_status == extensions.TRANSACTION_STATUS_IDLE):
            self._idle.append(conn)
        else:
            self._discard(conn)

    # -- what handlers use -------------------------------------------------------------

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """Autocommit: each statement is its own transaction (reads)."""
        with self.connection() as conn, conn.cursor() as cursor:
            yield cursor

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """BEGIN ... COMMIT, or ROLLBACK on any error: all of it is written, or none."""
        with self.connection() as conn, conn.cursor() as cursor:
            cursor.execute("BEGIN")
            try:
                yield cursor
            except BaseException:
                if not conn.closed and not conn.isexecuting():
                    try:
                        cursor.execute("ROLLBACK")
                    except self.pg.Error:
                        pass  # then the connection is closed by `connection()`
                raise
            cursor.execute("COMMIT")
