"""The client's address and scheme behind trusted proxies (`FORWARDED_ALLOW_IPS`), pure.

A load balancer in front of the stack makes every request come from its own address, and
says who the client was in `X-Forwarded-For` / `X-Forwarded-Proto` (the de facto headers)
or `Forwarded` (RFC 7239). Anyone can send those headers, so they are believed only when
the connection comes from an address in the trusted set, as Gunicorn's
`forwarded_allow_ips` and uvicorn's `--forwarded-allow-ips` do.

The rule (`client_of`):

- The peer is not trusted: its own address and scheme, headers ignored.
- Otherwise the chain is walked from the right (the entry the nearest proxy added) to the
  left, past every trusted address; the first untrusted address is the client, with the
  scheme recorded beside it. Every address trusted: the leftmost one.
- An entry that is not an address (`unknown`, an obfuscated `_name`, garbage) ends the
  walk: the client is the last address passed (the peer, if none), never a guess.
- Both `Forwarded` and `X-Forwarded-*` present: each of the address and the scheme is
  believed only if every header that states it says the same. A proxy that writes one
  family passes the other through from the client, so a disagreement is a spoof of one
  of them: the peer and the connection's scheme are kept.
- An `X-Forwarded-For` that names only the peer says nothing: Mongrel2 1.12 writes its
  client's address there, replacing whatever came (so behind Mongrel2 a proxy names the
  client with `Forwarded`; `X-Forwarded-Proto` reaches the handler as it was sent).

A trusted proxy must write (or overwrite) the headers it is trusted for: one that passes
a client's header through unread makes that header believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = ("http", "https")


class TrustedProxies:
    """A set of addresses and networks; `*` trusts every peer (only for a handler that
    nothing but the proxy can reach)."""

    __slots__ = ("networks", "everyone")

    def __init__(self, networks: Iterable[Network] = (), *, everyone: bool = False):
        self.networks = tuple(networks)
        self.everyone = everyone

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """`"10.0.0.0/8, 192.0.2.7, ::1"` or `"*"`; "" trusts none. ValueError names the
        entry that is neither an address nor a network."""
        networks: list[Network] = []
        everyone = False
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            if entry == "*":
                everyone = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry[:60]!r} is neither an IP address nor a network (CIDR)") from None
        return cls(networks, everyone=everyone)

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)

    def __contains__(self, address: Address | None) -> bool:
        if address is None:
            return False
        if self.everyone:
            return True
        return any(address.version == net.version and address in net for net in self.networks)


def parse_address(text: str) -> Address | None:
    """An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
    `[2001:db8::1]:4711`, optionally quoted; an IPv4-mapped IPv6 address as IPv4. None
    for anything else."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_of(peer: str, scheme: str, headers: Mapping[str, str],
              trusted: TrustedProxies) -> tuple[str, str]:
    """The client's address and scheme: `peer` and `scheme` (what the connection says)
    unless `peer` is trusted and the forwarding headers say more. `headers` have
    lower-case names, repeated ones joined with ", "."""
    peer_address = parse_address(peer)
    if not trusted or peer_address not in trusted:
        return peer, scheme
    found = []
    forwarded = headers.get("forwarded")
    if forwarded is not None:
        found.append(_walk(_forwarded_hops(forwarded), trusted))
    x_for, x_proto = headers.get("x-forwarded-for"), headers.get("x-forwarded-proto")
    if x_for is not None and "," not in x_for and parse_address(x_for) == peer_address:
        x_for = None  # Mongrel2's own: the peer again
    if x_for is not None or x_proto is not None:
        found.append(_walk(_x_forwarded_hops(x_for, x_proto), trusted))
    addresses = {address for address, _ in found if address is not None}
    schemes = {proto for _, proto in found if proto is not None}
    if len(addresses) > 1 or len(schemes) > 1:
        return peer, scheme  # the two families disagree: one of them is a client's
    return (addresses.pop() if addresses else peer), (schemes.pop() if schemes else scheme)


Hop = tuple[str | None, str | None]  # (address as text or None, scheme or None)


def _walk(hops: list[Hop], trusted: TrustedProxies) -> Hop:
    """The client's hop: right to left past trusted addresses (see the module's rule). The
    rightmost hop with no address (`X-Forwarded-Proto` alone) still tells the scheme."""
    last: Hop = (None, None)
    for place, (text, proto) in enumerate(reversed(hops)):
        address = parse_address(text) if text is not None else None
        if address is None:
            if place == 0 and text is None:
                last = (None, proto)
            break
        last = (str(address), proto)
        if address not in trusted:
            break
    return last


def _x_forwarded_hops(x_for: str | None, x_proto: str | None) -> list[Hop]:
    """X-Forwarded-For's entries, each with the X-Forwarded-Proto entry beside it: the one
    at the same place when both lists are as long, else the single one, else none."""
    protos = [_scheme(part) for part in x_proto.split(",")] if x_proto is not None else []
    single = protos[0] if len(protos) == 1 else None
    if x_for is None:
        return [(None, single)]
    addresses = [part.strip() for part in x_for.split(",")]
    if len(protos) == len(addresses):
        return list(zip(addresses, protos, strict=True))
    return [(address, single) for address in addresses]


def _forwarded_hops(value: str) -> list[Hop]:
    """RFC 7239: `for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`."""
    hops: list[Hop] = []
    for element in _split_outside_quotes(value, ","):
        pairs: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            name, equals, raw = pair.partition("=")
            if equals:
                pairs[name.strip().lower()] = raw.strip().strip('"')
        proto = pairs.get("proto")
        hops.append((pairs.get("for"), _scheme(proto) if proto is not None else None))
    return hops


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _scheme(text: str) -> str | None:
    scheme = text.strip().strip('"').lower()
    return scheme if scheme in SCHEMES else None
