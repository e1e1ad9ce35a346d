"""HTTP/1.1 response bytes, sans I/O: the status line, the header block, the body."""

from __future__ import annotations

from m2stack import httpspec
from m2stack.protocol.errors import ProtocolError

__all__ = ["ProtocolError", "render_http_response"]


def _check_text(text: str, what: str) -> None:
    if not httpspec.is_safe_text(text):
        raise ProtocolError(f"{what} contains CR, LF or NUL: {text!r}")


def render_http_response(
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    body: bytes,
    version: str = "HTTP/1.1",
) -> bytes:
    """Render status line, headers and body. Adds nothing (not even
    Content-Length): the caller owns the header list."""
    if not isinstance(status, int) or not 100 <= status <= 999:
        raise ProtocolError(f"status {status!r} is not a 3-digit int")
    head = "".join([f"{version} {status} {reason}\r\n",
                    *[f"{name}: {value}\r\n" for name, value in headers], "\r\n"])
    # One pass over the whole head instead of one check per field: the head holds
    # exactly one CR and one LF per line it should have, no NUL, and known-good names.
    lines = len(headers) + 2
    if (head.count("\n") != lines or head.count("\r") != lines or "\0" in head
            or not (_TOKENS.issuperset([name for name, _ in headers])  # a list: cheaper than a generator
                    or all(name in _TOKENS or _remember_token(name) for name, _ in headers))):
        _explain(status, reason, headers, version)
    try:
        return head.encode("latin-1") + body
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"response head is not latin-1: {exc}") from exc


# Header names already checked: an app sends the same few names over and over.
_TOKENS: set[str] = set()
_MAX_TOKENS = 1024


def _remember_token(name: str) -> bool:
    if not httpspec.is_token(name):
        return False
    if len(_TOKENS) < _MAX_TOKENS:
        _TOKENS.add(name)
    return True


def _explain(status: int, reason: str, headers: list[tuple[str, str]], version: str) -> None:
    """Field by field, to say which one is wrong."""
    _check_text(version, "version")
    _check_text(reason, "reason")
    for name, value in headers:
        if not httpspec.is_token(name):
            raise ProtocolError(f"header name {name!r} is not a token")
        _check_text(value, f"header {name!r}")
    raise ProtocolError(f"response head of status {status} is malformed")
