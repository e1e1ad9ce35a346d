"""HTTP syntax rules every layer checks the same way (RFC 9110), standard library only.

The app refuses an unsafe header when an endpoint sets it (so the endpoint's author sees
the mistake), and the protocol layer refuses it again when rendering bytes (so nothing
unsafe ever reaches the wire). Both ask these functions, so they cannot disagree.
"""

from __future__ import annotations

import re
from http import HTTPStatus

# RFC 9110 section 5.6.2: a token, the only legal form of a field name.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\0]")

REASONS: dict[int, str] = {status.value: status.phrase for status in HTTPStatus}


def is_token(name: str) -> bool:
    return _TOKEN.match(name) is not None


def is_safe_text(text: str) -> bool:
    """No CR or LF (they would start a new header or the body: response splitting) and no
    NUL (it truncates in some C parsers)."""
    return _FORBIDDEN_IN_VALUE.search(text) is None


def reason_phrase(status: int) -> str:
    return REASONS.get(status, "Unknown")


# Hop-by-hop fields (RFC 9110 section 7.6.1) plus Transfer-Encoding and Content-Length,
# which the server owns: PEP 3333 forbids a WSGI application to send them.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade",
                        "proxy-connection"})
