"""ZeroMQ over TCP, as every long-lived socket here uses it (handlers and the dispatcher)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def keep_alive(zmq: Any, sock: Any, keepalive_idle: int, peer_heartbeat: float) -> None:
    """TCP keepalive (the kernel probes an idle connection) and ZMTP heartbeats (libzmq
    pings the peer, drops the connection when no answer comes, then reconnects): a
    connection silently dropped by an overlay, NAT or VIP after it was idle (often 900 s)
    is noticed and re-established."""
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, keepalive_idle)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, max(1, keepalive_idle // 6))
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
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


def front_endpoints(address: str, requests_port: str, responses_port: str) -> tuple[str, str]:
    """One mongrel2's two sockets at a resolved address."""
    host = f"[{address}]" if ":" in address else address
    return f"tcp://{host}:{requests_port}", f"tcp://{host}:{responses_port}"
