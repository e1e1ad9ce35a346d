"""What an endpoint returns: `Response`, the JSON helpers, and `HTTPError` for the rest."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from http.cookies import SimpleCookie
from typing import Any

import msgspec

from m2stack import httpspec

_json_encode = msgspec.json.Encoder().encode


class HTTPError(Exception):
    """Raise from an endpoint to answer with `status` and a JSON error body."""

    def __init__(self, status: int, message: str, *, details: Any = None,
                 headers: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = list(headers)


class DeadlineExceeded(BaseException):
    """Raised into an endpoint when its request ran out of time; the app answers 504.

    A BaseException, like the hubs' Timeout, so an endpoint's `except Exception` cannot
    swallow it."""

    def __init__(self, limit: float):
        super().__init__(limit)
        self.limit = limit


class Response:
    """Status, headers and body. Helpers on `Endpoint` build the common ones.

    `stream` is None for a body held in full; a `StreamingResponse` sets it."""

    __slots__ = ("status", "headers", "body", "stream")
    stream: Iterable[bytes] | None

    def __init__(self, body: bytes = b"", status: int = 200,
                 content_type: str | None = "text/plain; charset=utf-8",
                 headers: Iterable[tuple[str, str]] = ()):
        self.status = status
        self.body = body
        self.stream = None
        self.headers: list[tuple[str, str]] = []
        if content_type:
            self.headers.append(("Content-Type", content_type))
        for name, value in headers:
            self.set_header(name, value, replace=False)

    def set_header(self, name: str, value: str, *, replace: bool = True) -> None:
        """Add a header; CR, LF and NUL are refused so no input can split a response."""
        value = str(value)
        if not httpspec.is_token(name) or not httpspec.is_safe_text(value):
            raise ValueError(f"refusing unsafe response header {name!r}")
        if replace:
            lowered = name.lower()
            self.headers = [(n, v) for n, v in self.headers if n.lower() != lowered]
        self.headers.append((name, value))

    def set_cookie(self, name: str, value: str, *, path: str = "/", max_age: int | None = None,
                   http_only: bool = True, same_site: str = "Lax", secure: bool = False) -> None:
        jar: SimpleCookie = SimpleCookie()
        jar[name] = value  # SimpleCookie quotes the value, so it cannot inject attributes
        morsel = jar[name]
        morsel["path"] = path
        morsel["samesite"] = same_site
        if max_age is not None:
            morsel["max-age"] = str(max_age)
        morsel["httponly"] = http_only
        morsel["secure"] = secure
        self.set_header("Set-Cookie", morsel.OutputString(), replace=False)

    @property
    def reason(self) -> str:
        return httpspec.reason_phrase(self.status)


class StreamingResponse(Response):
    """A body produced piece by piece: `chunks` is any iterable of bytes (a generator),
    read by the front door as it sends, so the whole body is never in memory.

    The front door decides the framing (chunked, close-delimited, or its server's own).
    If `chunks` has a `close()` (a generator does), the door calls it once it stops
    reading, whether the body ended, the client left, or it failed. An exception raised
    before the first chunk still becomes the usual JSON error; one raised after it can
    only end the stream (the door closes the connection and logs it)."""

    __slots__ = ()

    def __init__(self, chunks: Iterable[bytes], status: int = 200,
                 content_type: str | None = "application/octet-stream",
                 headers: Iterable[tuple[str, str]] = ()):
        super().__init__(b"", status, content_type, headers)
        self.stream = chunks

    def discard(self) -> None:
        """Drop the body unread (HEAD), closing the producer."""
        close_stream(self.stream)
        self.stream = None


def close_stream(chunks: Iterable[bytes] | Iterator[bytes] | None) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def json_response(data: Any, status: int = 200) -> Response:
    return Response(_json_encode(data), status, "application/json")


def error_response(status: int, message: str, request_id: str, details: Any = None,
                   headers: Iterable[tuple[str, str]] = ()) -> Response:
    error: dict[str, Any] = {"status": status, "message": message}
    if details is not None:
        error["details"] = details
    response = json_response({"error": error, "request_id": request_id}, status)
    for name, value in headers:
        response.set_header(name, value, replace=False)
    return response
