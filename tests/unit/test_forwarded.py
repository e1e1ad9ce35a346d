"""The client's address and scheme behind trusted proxies (app/forwarded.py): a pure function."""

from __future__ import annotations

import pytest

from m2stack.app.forwarded import TrustedProxies, client_of, parse_address

LB = "10.0.0.5"           # the load balancer in front, trusted
TRUSTED = TrustedProxies.parse("10.0.0.0/24, 2001:db8:1::/48, 192.0.2.9")


def resolve(headers: dict[str, str], peer: str = LB, scheme: str = "http",
            trusted: TrustedProxies = TRUSTED) -> tuple[str, str]:
    return client_of(peer, scheme, headers, trusted)


def test_no_trusted_proxy_means_the_peer_whatever_the_headers():
    headers = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https",
               "forwarded": "for=203.0.113.7;proto=https"}
    assert resolve(headers, trusted=TrustedProxies.parse("")) == (LB, "http")
    assert not TrustedProxies.parse(" , ")


@pytest.mark.parametrize("headers", [
    {"x-forwarded-for": "203.0.113.7"},
    {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"},
    {"forwarded": "for=203.0.113.7;proto=https"},
    {"x-forwarded-for": "1.1.1.1, 10.0.0.1"},
])
def test_an_untrusted_peer_cannot_spoof_anything(headers):
    assert resolve(headers, peer="198.51.100.66") == ("198.51.100.66", "http")
    assert resolve(headers, peer="198.51.100.66", scheme="https") == ("198.51.100.66", "https")


def test_a_trusted_peer_names_the_client_and_its_scheme():
    assert resolve({"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}) == ("203.0.113.7", "https")
    assert resolve({"x-forwarded-for": "203.0.113.7"}) == ("203.0.113.7", "http")
    assert resolve({"forwarded": 'for=203.0.113.7;proto=https;by=10.0.0.5'}) == ("203.0.113.7", "https")
    assert resolve({"forwarded": 'For="[2001:db8:cafe::17]:4711"'}) == ("2001:db8:cafe::17", "http")


def test_the_scheme_alone_is_believed_from_a_trusted_peer():
    assert resolve({"x-forwarded-proto": "https"}) == (LB, "https")
    assert resolve({"forwarded": "proto=https"}) == (LB, "https")
    assert resolve({"x-forwarded-proto": "gopher"}) == (LB, "http")  # not a scheme of ours


def test_the_chain_is_walked_from_the_right_past_trusted_proxies_only():
    # The client wrote "6.6.6.6" itself; two trusted proxies appended what they saw.
    headers = {"x-forwarded-for": "6.6.6.6, 203.0.113.7, 10.0.0.7, 192.0.2.9"}
    assert resolve(headers) == ("203.0.113.7", "http")
    forwarded = 'for=6.6.6.6;proto=https, for=203.0.113.7;proto=http, for="10.0.0.7";proto=https'
    assert resolve({"forwarded": forwarded}) == ("203.0.113.7", "http")


def test_every_hop_trusted_gives_the_leftmost():
    assert resolve({"x-forwarded-for": "10.0.0.8, 10.0.0.7"}) == ("10.0.0.8", "http")


def test_protos_are_matched_to_their_hop_when_the_lists_are_as_long():
    headers = {"x-forwarded-for": "203.0.113.7, 10.0.0.7", "x-forwarded-proto": "https, http"}
    assert resolve(headers) == ("203.0.113.7", "https")
    headers = {"x-forwarded-for": "203.0.113.7, 10.0.0.7", "x-forwarded-proto": "https, http, http"}
    assert resolve(headers) == ("203.0.113.7", "http")  # lists that do not line up: no scheme from them


@pytest.mark.parametrize("value, expected", [
    ("unknown", LB),                                  # RFC 7239's "unknown": nothing to name
    ("_hidden, 203.0.113.7", "203.0.113.7"),
    ("203.0.113.7, garbage, 10.0.0.7", "10.0.0.7"),   # the walk stops at the last address it knew
    ("", LB),
    ("203.0.113.7:8080", "203.0.113.7"),
    ("[2001:db8::5]:443", "2001:db8::5"),
    ("2001:db8::5", "2001:db8::5"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("999.1.1.1", LB),
    ("203.0.113.7\x00", LB),
    (",,,", LB),
])
def test_malformed_entries_never_become_a_guess(value, expected):
    assert resolve({"x-forwarded-for": value})[0] == expected


@pytest.mark.parametrize("value", [
    'for=203.0.113.7;proto="https"',
    'for="203.0.113.7";proto=https',
    'FOR=203.0.113.7; PROTO=HTTPS',
])
def test_forwarded_syntax_variants(value):
    assert resolve({"forwarded": value}) == ("203.0.113.7", "https")


@pytest.mark.parametrize("value", ['for="[2001:db8::1, 10.0.0.7";proto', "for", ";;;", 'for=";,"', "=,="])
def test_garbled_forwarded_is_no_client(value):
    assert resolve({"forwarded": value}) == (LB, "http")


def test_both_header_families_must_agree():
    agree = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https",
             "forwarded": "for=203.0.113.7;proto=https"}
    assert resolve(agree) == ("203.0.113.7", "https")
    # A proxy that writes one family passes the client's other one through: a spoof.
    spoofed = {"x-forwarded-for": "203.0.113.7", "forwarded": "for=1.2.3.4"}
    assert resolve(spoofed) == (LB, "http")
    spoofed_scheme = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "http",
                      "forwarded": "for=203.0.113.7;proto=https"}
    assert resolve(spoofed_scheme) == (LB, "http")
    # A family that does not state the address or the scheme does not vote on it.
    assert resolve({"forwarded": "for=203.0.113.7", "x-forwarded-proto": "https"}) == ("203.0.113.7", "https")


def test_an_x_forwarded_for_naming_only_the_peer_says_nothing():
    # Mongrel2 1.12 replaces X-Forwarded-For with the address it saw: the trusted proxy's.
    assert resolve({"x-forwarded-for": LB, "forwarded": "for=203.0.113.7;proto=https"}) == ("203.0.113.7", "https")
    assert resolve({"x-forwarded-for": LB, "x-forwarded-proto": "https"}) == (LB, "https")
    assert resolve({"x-forwarded-for": f"{LB}, {LB}"}) == (LB, "http")


def test_trusted_sets():
    everyone = TrustedProxies.parse("*")
    assert parse_address("198.51.100.1") in everyone and parse_address("::1") in everyone
    assert parse_address("10.0.0.200") in TRUSTED and parse_address("10.0.1.1") not in TRUSTED
    assert parse_address("2001:db8:1:2::9") in TRUSTED and parse_address("2001:db8:2::9") not in TRUSTED
    assert parse_address("::ffff:10.0.0.3") in TRUSTED  # an IPv4-mapped peer is its IPv4 address
    assert None not in TRUSTED and None not in everyone
    assert resolve({"x-forwarded-for": "203.0.113.7"}, peer="not an address") == ("not an address", "http")


@pytest.mark.parametrize("text", ["10.0.0.0/33", "localhost", "10.0.0.1/8/8", "fe80::1%eth0/64x"])
def test_a_bad_trusted_entry_is_refused_by_name(text):
    with pytest.raises(ValueError, match="neither an IP address nor a network"):
        TrustedProxies.parse(f"192.0.2.1, {text}")
