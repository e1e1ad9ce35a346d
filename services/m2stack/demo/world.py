"""The TechEmpower database tests: /db, /queries, /fortunes, /updates (and /db/sleep).

Rules followed (FrameworkBenchmarks "Test types"): a random id in 1..10000 per query,
one query per row read; `queries` missing or not a number counts as 1 and is clamped
to 1..500; fortunes are sorted in the app after one is added at request time, and
rendered through an escaping template; updates may be written back in one batch.
"""

from __future__ import annotations

import random
from html import escape

from m2stack import db
from m2stack.app import Endpoint, Response, Router

WORLD_ROWS = 10_000
MAX_QUERIES = 500
MAX_DB_SLEEP_MS = 2_000  # below the statement timeout (DB_STATEMENT_TIMEOUT_MS, 5 s)
EXTRA_FORTUNE = (0, "Additional fortune added at request time.")

SELECT_WORLD = "SELECT id, randomnumber FROM world WHERE id = %s"
SELECT_FORTUNES = "SELECT id, message FROM fortune"

routes = Router()


def queries_count(raw: str | None) -> int:
    """TechEmpower's `queries`: not an integer -> 1, then clamped to 1..500."""
    try:
        count = int(raw or "", 10)
    except ValueError:
        return 1
    return min(max(count, 1), MAX_QUERIES)


def random_id() -> int:
    return random.randint(1, WORLD_ROWS)


def render_fortunes(rows: list[tuple[int, str]]) -> str:
    """The fortunes page; every value goes through html.escape (quotes included)."""
    cells = "".join(f"<tr><td>{escape(str(id_))}</td><td>{escape(message)}</td></tr>"
                    for id_, message in rows)
    return ("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
            f"<tr><th>id</th><th>message</th></tr>{cells}</table></body></html>")


def sorted_fortunes(rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return sorted([*rows, EXTRA_FORTUNE], key=lambda row: row[1])


class DatabaseEndpoint(Endpoint):
    @property
    def db(self) -> db.Pool:
        return self.app.state.db


@routes.route("/db")
class SingleQuery(DatabaseEndpoint):
    def get(self) -> Response:
        with self.db.cursor() as cursor:
            cursor.execute(SELECT_WORLD, (random_id(),))
            id_, number = cursor.fetchone()
        return self.json({"id": id_, "randomNumber": number})


@routes.route("/queries")
class MultipleQueries(DatabaseEndpoint):
    def get(self) -> Response:
        count = queries_count(self.request.argument("queries"))
        worlds = []
        with self.db.cursor() as cursor:
            for _ in range(count):
                cursor.execute(SELECT_WORLD, (random_id(),))
                id_, number = cursor.fetchone()
                worlds.append({"id": id_, "randomNumber": number})
        return self.json(worlds)


@routes.route("/fortunes")
class Fortunes(DatabaseEndpoint):
    def get(self) -> Response:
        with self.db.cursor() as cursor:
            cursor.execute(SELECT_FORTUNES)
            rows = cursor.fetchall()
        return self.html(render_fortunes(sorted_fortunes(rows)))


@routes.route("/updates")
class Updates(DatabaseEndpoint):
    def get(self) -> Response:
        count = queries_count(self.request.argument("queries"))
        with self.db.transaction() as cursor:
            ids = []
            for _ in range(count):
                cursor.execute(SELECT_WORLD, (random_id(),))
                ids.append(cursor.fetchone()[0])
            # One new number per distinct row; written in id order, one statement, so
            # concurrent /updates lock rows in the same order and cannot deadlock.
            numbers = {id_: random_id() for id_ in sorted(set(ids))}
            values = ", ".join(["(%s, %s)"] * len(numbers))
            cursor.execute(f"UPDATE world SET randomnumber = v.n FROM (VALUES {values}) AS v(id, n)"
                           " WHERE world.id = v.id",
                           [x for pair in numbers.items() for x in pair])
        return self.json([{"id": id_, "randomNumber": numbers[id_]} for id_ in ids])


@routes.route("/db/sleep")
class DatabaseSleep(DatabaseEndpoint):
    """`SELECT pg_sleep(ms/1000)`: a slow query, to show the hub serving others meanwhile."""

    def get(self) -> Response:
        ms = self.request.int_argument("ms", 200, minimum=0, maximum=MAX_DB_SLEEP_MS)
        with self.db.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s)", (ms / 1000,))
        return self.json({"slept_ms": ms})
