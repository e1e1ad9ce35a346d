"""The request every front door hands to the app: decoded strictly, never guessed at."""

from __future__ import annotations

import itertools
import os
import re
import secrets
from http.cookies import SimpleCookie
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote_to_bytes

import msgspec

from m2stack.app.response import HTTPError
from m2stack.app.validation import decode_json, malformed_json

T = TypeVar("T")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_json_decoder = msgspec.json.Decoder()


def _strict_unquote(raw: bytes, what: str) -> str:
    """Percent-decode and UTF-8-decode, refusing what a lenient decoder would guess at."""
    if _BAD_PERCENT.search(raw):
        raise HTTPError(400, f"invalid percent-encoding in {what}")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, f"invalid UTF-8 in {what}") from None


def _parse_query(raw: bytes) -> dict[str, list[str]]:
    if _BAD_PERCENT.search(raw):
        raise HTTPError(400, "invalid percent-encoding in query string")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True,
                          encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise HTTPError(400, "invalid UTF-8 in query string") from None
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        query.setdefault(name, []).append(value)
    return query



class Request:
    """One HTTP request, as every front door hands it to the app."""

    __slots__ = ("method", "path", "query", "headers", "body", "version",
                 "remote_addr", "peer_addr", "scheme", "request_id", "error", "_cookies")

    def __init__(self, method: str, path: str, query: dict[str, list[str]],
                 headers: dict[str, str], body: bytes, *, version: str = "HTTP/1.1",
                 remote_addr: str = "", scheme: str = "http", request_id: str = ""):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # lower-case names; repeated headers joined with ", "
        self.body = body
        self.version = version
        # The client's address and scheme: those of the connection, until `App.handle` takes
        # them from a trusted proxy's headers (FORWARDED_ALLOW_IPS, app/forwarded.py).
        self.remote_addr = remote_addr
        self.peer_addr = remote_addr  # the connection's peer, whatever the headers say
        self.scheme = scheme  # "https" when the client reached the front door over TLS
        self.request_id = request_id or new_request_id(headers.get("x-request-id"))
        self.error: HTTPError | None = None  # set when the wire form could not be decoded
        self._cookies: dict[str, str] | None = None

    @classmethod
    def from_raw(cls, method: str, raw_path: bytes, raw_query: bytes,
                 headers: dict[str, str], body: bytes, **kwargs: Any) -> Request:
        """Build from wire bytes. Undecodable path or query is not raised here: it is
        kept in `error`, and `App.handle` answers it with a 400 like any other error."""
        try:
            path = _strict_unquote(raw_path, "path")
            query = _parse_query(raw_query) if raw_query else {}
        except HTTPError as exc:
            request = cls(method, "", {}, headers, body, **kwargs)
            request.error = exc
            return request
        return cls(method, path, query, headers, body, **kwargs)

    def argument(self, name: str, default: str | None = None) -> str | None:
        """The last value of a query argument (Brubeck's get_argument)."""
        values = self.query.get(name)
        return values[-1] if values else default

    def int_argument(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        """A query argument that must be an integer in [minimum, maximum], else 400."""
        raw = self.argument(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw, 10)
        except ValueError:
            raise HTTPError(400, f"query argument '{name}' must be an integer",
                            details={"argument": name, "value": raw[:64]}) from None
        if not minimum <= value <= maximum:
            raise HTTPError(400, f"query argument '{name}' must be between {minimum} and {maximum}",
                            details={"argument": name, "value": value})
        return value

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            jar = SimpleCookie()
            try:
                jar.load(self.headers.get("cookie", ""))
            except Exception:  # a garbled Cookie header means no cookies, not a 500
                jar = SimpleCookie()
            self._cookies = {name: morsel.value for name, morsel in jar.items()}
        return self._cookies

    def expect_json(self) -> None:
        """415 unless the body is declared as JSON."""
        content_type = self.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise HTTPError(415, "expected Content-Type: application/json",
                            details={"content_type": content_type[:100]})

    def json(self) -> Any:
        """The body decoded as JSON; 415 for another content type, 400 if malformed."""
        self.expect_json()
        try:
            return _json_decoder.decode(self.body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter for bad UTF-8
            raise malformed_json(exc) from None

    def decode(self, model: type[T], *, what: str = "body") -> T:
        """The body decoded and validated as `model` (a msgspec Struct, app/validation.py):
        415 for another content type, 400 for malformed JSON or a key named twice, 422
        (`invalid <what>`) listing every invalid field with its path."""
        self.expect_json()
        return decode_json(self.body, model, what=what)

    @property
    def wants_close(self) -> bool:
        """True when the client asked for the connection to end after this response."""
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" not in connection
        return "close" in connection


def new_request_id(offered: str | None = None) -> str:
    """Keep a well-formed client/proxy X-Request-Id so ids follow a request; else mint one:
    16 hex digits, a random prefix per process and a counter (unique without asking the
    OS for randomness on every request)."""
    if offered and _REQUEST_ID.match(offered):
        return offered
    return f"{_id_prefix}{next(_id_counter) & 0xFFFFFFFF:08x}"


def _new_id_sequence() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = secrets.token_hex(4), itertools.count()


_id_prefix, _id_counter = "", itertools.count()
_new_id_sequence()
os.register_at_fork(after_in_child=_new_id_sequence)  # a forked worker must not repeat its parent's ids
