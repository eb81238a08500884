"""Encoding of mycni_ep4 keys and values as the C side lays them out."""

from __future__ import annotations

import sys
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycni_ebpf_redirect.maps import ENDPOINT, Endpoint, encode_key, hex_args, parse_mac


def test_endpoint_is_16_bytes_without_padding() -> None:
    # struct endpoint { __u32 ifindex; __u8 pod_mac[6]; __u8 host_mac[6]; }
    assert ENDPOINT.size == 16


def test_endpoint_layout() -> None:
    ep = Endpoint(5, bytes.fromhex("020000000003"), bytes.fromhex("020000000004"))
    raw = ep.encode()
    assert raw[:4] == (5).to_bytes(4, sys.byteorder)
    assert raw[4:10] == ep.pod_mac
    assert raw[10:] == ep.host_mac


@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.binary(min_size=6, max_size=6),
    st.binary(min_size=6, max_size=6),
)
def test_endpoint_round_trips(ifindex: int, pod: bytes, host: bytes) -> None:
    ep = Endpoint(ifindex, pod, host)
    assert Endpoint.decode(ep.encode()) == ep


def test_key_is_network_order() -> None:
    assert encode_key(IPv4Address("10.1.0.3")) == bytes([10, 1, 0, 3])
    assert hex_args(encode_key(IPv4Address("10.1.0.3"))) == ["0a", "01", "00", "03"]


def test_parse_mac() -> None:
    assert parse_mac("02:00:0A:00:00:ff") == bytes.fromhex("02000a0000ff")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "02:00:00:00:00",
        "02-00-00-00-00-01",
        "0200:00:00:00:01",
        "zz:00:00:00:00:01",
    ],
)
def test_parse_mac_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mac(text)


def test_ipv6_key_is_the_16_bytes_as_on_the_wire() -> None:
    key = encode_key(IPv6Address("fd00:1::3"))
    assert key == bytes.fromhex("fd000001000000000000000000000003")
