"""Reading the host veth, pod MAC and IP addresses out of prevResult."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from libcni.errors import InvalidConfig
from libcni.types import Result
from mycni_ebpf_redirect.attachment import Attachment


def prev(**overrides: Any) -> Result:
    obj: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "veth1", "mac": "02:00:00:00:00:04"},
            {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/run/netns/p"},
        ],
        "ips": [
            {"address": "10.1.0.3/24", "gateway": "10.1.0.1", "interface": 1},
            {"address": "fd00::3/64", "interface": 1},
            {"address": "10.9.0.1/24", "interface": 0},
        ],
    }
    obj.update(overrides)
    return Result.from_dict(obj, "prevResult")


def test_reads_host_veth_mac_and_the_pods_addresses_of_both_families() -> None:
    got = Attachment.from_prev_result(prev(), "eth0")
    assert got == Attachment(
        host_veth="veth1",
        pod_mac=bytes.fromhex("020000000003"),
        ips=(IPv4Address("10.1.0.3"), IPv6Address("fd00::3")),
    )


def test_ips_without_interface_belong_to_the_pod() -> None:
    got = Attachment.from_prev_result(prev(ips=[{"address": "10.1.0.5/24"}]), "eth0")
    assert got.ips == (IPv4Address("10.1.0.5"),)


@pytest.mark.parametrize(
    ("overrides", "ifname", "where"),
    [
        ({"interfaces": [{"name": "eth0", "sandbox": "/x", "mac": "02:00:00:00:00:03"}],
          "ips": [{"address": "10.1.0.3/24", "interface": 0}]},
         "eth0", "prevResult.interfaces: no host-side interface"),
        ({}, "eth1", "prevResult.interfaces: no interface eth1 inside a sandbox"),
        ({"interfaces": [{"name": "veth1"}, {"name": "eth0", "sandbox": "/x"}]},
         "eth0", 'prevResult.interfaces[1].mac: ""'),
    ],
    ids=["no-host-side", "other-ifname", "no-pod-mac"],
)  # fmt: skip
def test_unusable_prev_result(
    overrides: dict[str, Any], ifname: str, where: str
) -> None:
    with pytest.raises(InvalidConfig) as info:
        Attachment.from_prev_result(prev(**overrides), ifname)
    assert info.value.msg.startswith(where)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("0.0.0.0/24", "not a unicast"),
        ("224.0.0.1/24", "not a unicast"),
        ("127.0.0.1/8", "not a unicast"),
        ("169.254.0.9/16", "not a unicast"),
        ("::/64", "not a unicast"),
        ("ff02::1/64", "not a unicast"),
        ("fe80::1/64", "not a unicast"),
        ("::1/128", "not a unicast"),
        ("10.1.0.0/24", "network or broadcast"),
        ("10.1.0.255/24", "network or broadcast"),
        ("10.1.0.1/24", "gateway"),
    ],
    ids=["unspecified", "multicast", "loopback", "v4-link-local", "v6-unspecified",
         "v6-multicast", "v6-link-local", "v6-loopback", "network", "broadcast",
         "the-gateway"],
)  # fmt: skip
def test_addresses_that_would_steal_traffic_are_refused(address: str, why: str) -> None:
    """In the endpoint map such an address redirects other traffic into this pod
    (a review found the gateway and the node's own address taken that way)."""
    gateway = "10.1.0.1" if "." in address else "fd00::1"
    ips = [{"address": address, "gateway": gateway, "interface": 1}]
    with pytest.raises(InvalidConfig) as info:
        Attachment.from_prev_result(prev(ips=ips), "eth0")
    assert info.value.msg.startswith("prevResult.ips[0].address: ")
    assert why in info.value.msg


def test_a_point_to_point_prefix_has_no_network_or_broadcast_address() -> None:
    ips = [{"address": "10.1.0.0/31", "interface": 1}]
    got = Attachment.from_prev_result(prev(ips=ips), "eth0")
    assert got.ips == (IPv4Address("10.1.0.0"),)


def test_a_multicast_pod_mac_is_refused() -> None:
    """It would be the destination MAC of every frame redirected to the pod."""
    interfaces = [
        {"name": "veth1", "mac": "02:00:00:00:00:04"},
        {"name": "eth0", "mac": "01:00:5e:00:00:01", "sandbox": "/run/netns/p"},
    ]
    with pytest.raises(InvalidConfig) as info:
        Attachment.from_prev_result(prev(interfaces=interfaces), "eth0")
    assert info.value.msg.startswith("prevResult.interfaces[1].mac: ")
    assert "multicast" in info.value.msg


def test_names_the_field_the_host_interface_came_from() -> None:
    pod_first = prev(
        interfaces=[
            {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/run/netns/p"},
            {"name": "veth1", "mac": "02:00:00:00:00:04"},
        ],
        ips=[{"address": "10.1.0.3/24", "interface": 0}],
    )
    got = Attachment.from_prev_result(pod_first, "eth0")
    assert (got.host_veth, got.host_field) == ("veth1", "prevResult.interfaces[1].name")


def test_an_all_zero_pod_mac_is_refused() -> None:
    interfaces = [
        {"name": "veth1", "mac": "02:00:00:00:00:04"},
        {"name": "eth0", "mac": "00:00:00:00:00:00", "sandbox": "/run/netns/p"},
    ]
    with pytest.raises(InvalidConfig) as info:
        Attachment.from_prev_result(prev(interfaces=interfaces), "eth0")
    assert info.value.msg.startswith("prevResult.interfaces[1].mac: 00:00:00")
