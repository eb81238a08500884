"""explain's mirror of what the BPF programs leave to the host stack by address."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from mycni_ebpf_redirect.stack_rules import rule_for

POD4, POD6 = "10.1.0.3", "fd00:1::3"


@pytest.mark.parametrize(
    ("src", "dst", "field"),
    [
        ("0.0.0.0", POD4, "source"),
        ("0.255.255.255", POD4, "source"),
        ("127.0.0.1", POD4, "source"),
        ("224.0.0.1", POD4, "source"),
        ("239.255.255.255", POD4, "source"),
        ("240.0.0.1", POD4, "source"),
        ("255.255.255.255", POD4, "source"),
        ("::", POD6, "source"),
        ("::1", POD6, "source"),
        ("fe80::1", POD6, "source"),
        ("febf::1", POD6, "source"),
        ("ff02::1", POD6, "source"),
        ("fd00:2::2", "ff02::1", "destination"),
        ("fd00:2::2", "fe80::1", "destination"),
    ],
)
def test_stack_addresses_are_ruled(src: str, dst: str, field: str) -> None:
    rule = rule_for(ip_address(src), ip_address(dst))
    assert rule is not None and rule.field == field
    described = rule.describe(ip_address(src), ip_address(dst))
    assert described.startswith(f"{field} {src if field == 'source' else dst} is ")


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("10.2.0.2", POD4),
        ("1.0.0.0", POD4),  # just past 0.0.0.0/8
        ("126.255.255.255", POD4),
        ("128.0.0.0", POD4),
        ("223.255.255.255", POD4),  # just below multicast
        ("fd00:2::2", POD6),
        ("::2", POD6),
        ("fec0::1", POD6),  # just past fe80::/10
        ("feff::1", POD6),
        ("::ffff:127.0.0.1", POD6),  # not ::1; ip6_rcv_core forwards v4-mapped too
    ],
)
def test_ordinary_addresses_take_the_fast_path(src: str, dst: str) -> None:
    assert rule_for(ip_address(src), ip_address(dst)) is None
