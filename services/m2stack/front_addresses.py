"""Which mongrel2s ("fronts") a process serves: every address M2_REQUESTS_ENDPOINT's host
resolves to, followed as DNS changes (Swarm: `tasks.mongrel2` lists every replica).

Written once for the handlers (doors/mongrel2/fronts.py) and the dispatcher
(dispatch/service.py); each looks names up its own way (a hub, a thread) and owns its
sockets. No hub and no socket here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from m2stack.zmq_tcp import front_endpoints, split_endpoint

log = logging.getLogger("m2stack.fronts")

# lookup(host, port) -> addresses; raises OSError when the name does not resolve
Lookup = Callable[[str, int], Iterable[str]]


class FrontAddresses:
    """The configured endpoints, and each front's endpoints at a resolved address."""

    def __init__(self, requests_endpoint: str, responses_endpoint: str):
        scheme, host, port = split_endpoint(requests_endpoint)
        r_scheme, r_host, r_port = split_endpoint(responses_endpoint)
        if scheme == "tcp" and (r_scheme != "tcp" or r_host != host):
            raise SystemExit("M2_REQUESTS_ENDPOINT and M2_RESPONSES_ENDPOINT must name the same host: "
                             "both sockets of a front are found by resolving it")
        self.requests_endpoint, self.responses_endpoint = requests_endpoint, responses_endpoint
        self.host, self.requests_port, self.responses_port = host, port, r_port

    def resolve(self, lookup: Lookup) -> set[str] | None:
        """The addresses the front name resolves to now; None when resolution failed
        (then the fronts stay as they are: a DNS hiccup must not disconnect them).
        ipc:// or inproc:// have no name: one front, as configured (address "")."""
        if not self.host:
            return {""}
        try:
            return set(lookup(self.host, int(self.requests_port)))
        except OSError as exc:
            log.warning("cannot resolve the fronts", extra={"host": self.host, "error": str(exc)})
            return None

    def endpoints(self, address: str) -> tuple[str, str]:
        """(requests, responses) endpoints of the front at `address`."""
        if not address:
            return self.requests_endpoint, self.responses_endpoint
        return front_endpoints(address, self.requests_port, self.responses_port)

    @staticmethod
    def changes(known: Iterable[str], found: set[str]) -> tuple[list[str], list[str]]:
        """(added, removed) addresses, each sorted: the fronts to connect and to drop."""
        known = set(known)
        return sorted(found - known), sorted(known - found)


def drain_then_disconnect(sock: Any, endpoint: str, take_all: Callable[[], object],
                          zmq_error: type[Exception]) -> None:
    """Stop pulling from a front: libzmq drops what is still queued in a pipe when it
    disconnects (measured: 9 of 10 queued messages gone), so take it first."""
    take_all()
    try:
        sock.disconnect(endpoint)
    except zmq_error:
        pass  # already gone
