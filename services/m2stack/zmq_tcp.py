"""ZeroMQ over TCP, as every long-lived socket here uses it (handlers and the dispatcher)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

CONNECT_TIMEOUT_MS = 1000
RECONNECT_MS = 100  # libzmq's default, stated: how soon a lost peer is tried again


def keep_alive(zmq: Any, sock: Any, keepalive_idle: int, peer_heartbeat: float) -> None:
    """TCP keepalive (the kernel probes an idle connection) and ZMTP heartbeats (libzmq
    pings the peer, drops the connection when no answer comes, then reconnects): a
    connection silently dropped by an overlay, NAT or VIP after it was idle (often 900 s)
    is noticed and re-established."""
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, keepalive_idle)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, max(1, keepalive_idle // 6))
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
    # A connect() to an address whose host is gone (a replaced task's: nothing answers on
    # an overlay, not even a reset) waits out the kernel's SYN retries, minutes, unless
    # bounded: give up after a second and try again.
    sock.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
    if peer_heartbeat:
        interval_ms = int(peer_heartbeat * 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, interval_ms * 3)


def split_endpoint(endpoint: str) -> tuple[str, str, str]:
    """tcp://host:port -> (scheme, host, port); other transports have no host to resolve."""
    parts = urlsplit(endpoint)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        return parts.scheme, "", ""
    return "tcp", parts.hostname, str(parts.port)


def at_address(address: str, port: str) -> str:
    """A TCP endpoint at a resolved address: libzmq then never resolves a name itself (it
    would, in the I/O thread every socket of the process shares)."""
    host = f"[{address}]" if ":" in address else address
    return f"tcp://{host}:{port}"


def endpoint_at(endpoint: str, address: str) -> str:
    """`endpoint` (tcp://name:port) with its host replaced by a resolved address."""
    return at_address(address, split_endpoint(endpoint)[2])


def front_endpoints(address: str, requests_port: str, responses_port: str) -> tuple[str, str]:
    """One mongrel2's two sockets at a resolved address."""
    return at_address(address, requests_port), at_address(address, responses_port)
