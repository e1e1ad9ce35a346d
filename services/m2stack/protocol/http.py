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
    _check_text(version, "version")
    _check_text(reason, "reason")
    lines = [f"{version} {status} {reason}\r\n"]
    for name, value in headers:
        if not httpspec.is_token(name):
            raise ProtocolError(f"header name {name!r} is not a token")
        _check_text(value, f"header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    try:
        head = "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"response head is not latin-1: {exc}") from exc
    return head + body
