"""vxlan's pure logic: config validation, host veth names, pod routes."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcni.errors import InvalidConfig
from libcni.types import IPConfig, Route
from mycni_vxlan import overlay, routing, veth
from mycni_vxlan.config import TeardownConf, VxlanConf


def conf(**extra: Any) -> dict[str, Any]:
    return {"name": "net", "type": "vxlan", "ipam": {"type": "mycni-ipam"}, **extra}


def node(addr: str, subnet: str, **extra: Any) -> dict[str, Any]:
    return {"underlayAddress": addr, "podSubnet": subnet, **extra}


def test_defaults() -> None:
    parsed = VxlanConf.from_json(conf())
    assert (parsed.vni, parsed.port, parsed.device) == (1, 4789, "mycni.1")
    assert parsed.mtu is None and parsed.nodes == ()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"vni": "42"}, 'vni: expected an integer, got "42"'),
        ({"vni": 0}, "vni: 0 is outside 1..16777215"),
        ({"port": True}, "port: expected an integer, got true"),
        ({"mtu": 100}, "mtu: 100 is outside 576..65535"),
        ({"vxlanDevice": "x" * 16}, "vxlanDevice: "),
        ({"hostVethPrefix": "toolong"}, 'hostVethPrefix: "toolong" must be'),
        ({"hostVethPrefix": "éé"}, 'hostVethPrefix: "éé" must be'),
        ({"stateDir": "relative"}, 'stateDir: "relative" is not an absolute path'),
        ({"localAddress": "fd00::1"}, "localAddress: fd00::1 is IPv6"),
        (
            {"nodes": [node("10.0.0.1", "10.244.3.5/24")]},
            'nodes[0].podSubnet: "10.244.3.5/24" has host bits set',
        ),
        (
            {"nodes": [node("10.0.0.1", "10.1.0.0/24", podSubnets=["fd00::1/64"])]},
            'nodes[0].podSubnets[0]: "fd00::1/64" has host bits set',
        ),
        (
            {"nodes": [node("10.0.0.1", "10.1.0.0/24", podSubnets="fd00::/64")]},
            'nodes[0].podSubnets: expected a list, got "fd00::/64"',
        ),
        (
            {
                "nodes": [
                    node("10.0.0.1", "10.1.0.0/24", podSubnets=["fd00::/48"]),
                    node("10.0.0.2", "10.2.0.0/24", podSubnets=["fd00:0:0:1::/64"]),
                ]
            },
            "nodes[1].podSubnets[0]: fd00:0:0:1::/64 overlaps fd00::/48 of nodes[0]",
        ),
        (
            {
                "mtu": 1200,
                "nodes": [node("10.0.0.1", "10.1.0.0/24", podSubnets=["fd00::/64"])],
            },
            "mtu: 1200 is below 1280, the least IPv6 needs, and "
            "nodes[0].podSubnets[0] is the IPv6 subnet fd00::/64",
        ),
        (
            {
                "nodes": [
                    node("10.0.0.1", "10.1.0.0/16"),
                    node("10.0.0.2", "10.1.2.0/24"),
                ]
            },
            "nodes[1].podSubnet: 10.1.2.0/24 overlaps 10.1.0.0/16 of nodes[0]",
        ),
        (
            {
                "nodes": [
                    node("10.0.0.1", "10.1.0.0/24"),
                    node("10.0.0.1", "10.2.0.0/24"),
                ]
            },
            "nodes[1].underlayAddress: 10.0.0.1 repeats nodes[0]",
        ),
        (
            {
                "nodes": [
                    node("10.0.0.1", "10.1.0.0/24", name="a"),
                    node("10.0.0.2", "10.2.0.0/24", name="a"),
                ]
            },
            'nodes[1].name: "a" repeats nodes[0]',
        ),
        (
            {"nodes": [node("10.0.0.1", "10.0.0.0/8")]},
            "nodes[0].podSubnet: 10.0.0.0/8 contains the underlay address 10.0.0.1",
        ),
        ({"nodes": [node("10.0.0.1", "0.0.0.0/0")]}, "nodes[0].podSubnet: 0.0.0.0/0"),
        ({"ipam": {}}, "ipam.type: expected a plugin name"),
    ],
    ids=[
        "vni-string",
        "vni-zero",
        "port-bool",
        "mtu-tiny",
        "device-16-chars",
        "prefix-long",
        "prefix-non-ascii",
        "state-dir-relative",
        "local-ipv6",
        "subnet-host-bits",
        "subnets-list-host-bits",
        "subnets-not-a-list",
        "subnets-ipv6-overlap",
        "mtu-below-ipv6-minimum",
        "subnets-overlap",
        "underlay-twice",
        "name-twice",
        "subnet-holds-underlay",
        "subnet-everything",
        "ipam-without-type",
    ],
)
def test_invalid_config_names_the_field(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        VxlanConf.from_json(conf(**extra))
    assert err.value.msg.startswith(message), err.value.msg


def test_dual_stack_nodes_keep_both_subnets_in_order() -> None:
    parsed = VxlanConf.from_json(
        conf(
            nodes=[
                {"underlayAddress": "10.0.0.1", "podSubnets": ["fd00:1::/64"]},
                node("10.0.0.2", "10.2.0.0/24", podSubnets=["fd00:2::/64"]),
            ]
        )
    )
    first, second = parsed.nodes
    assert first.pod_subnets == (ipaddress.ip_network("fd00:1::/64"),)
    assert second.pod_subnets == (
        ipaddress.ip_network("10.2.0.0/24"),
        ipaddress.ip_network("fd00:2::/64"),
    )
    assert second.paths == ("nodes[1].podSubnet", "nodes[1].podSubnets[0]")
    assert parsed.has_ipv6
    assert not VxlanConf.from_json(
        conf(nodes=[node("10.0.0.1", "10.1.0.0/24")])
    ).has_ipv6


def test_a_small_mtu_is_fine_without_ipv6() -> None:
    parsed = VxlanConf.from_json(
        conf(mtu=1200, nodes=[node("10.0.0.1", "10.1.0.0/24")])
    )
    assert parsed.mtu == 1200


def test_vtep_addresses_are_the_first_subnet_of_each_version() -> None:
    parsed = VxlanConf.from_json(
        conf(
            nodes=[
                {
                    "underlayAddress": "10.0.0.1",
                    "podSubnets": [
                        "fd00:1::/64",
                        "10.1.0.0/24",
                        "fd00:9::/64",
                        "10.9.0.0/24",
                    ],
                }
            ]
        )
    )
    assert overlay.vtep_addresses(parsed.nodes[0]) == {
        6: ipaddress.ip_address("fd00:1::"),
        4: ipaddress.ip_address("10.1.0.0"),
    }


@pytest.mark.parametrize(
    ("underlay_mtu", "subnet", "ipv6", "expected"),
    [
        (1500, "fd00::/64", False, 1450),
        (1330, "fd00::/64", False, 1280),
        (1300, "10.9.0.0/24", False, 1250),
        (1329, "fd00::/64", False, None),
        (1300, "10.9.0.0/24", True, None),
    ],
    ids=["v6-1500", "v6-at-minimum", "v4-only-small", "v6-too-small", "v6-lease-only"],
)
def test_overlay_mtu_leaves_ipv6_its_minimum(
    underlay_mtu: int, subnet: str, ipv6: bool, expected: int | None
) -> None:
    parsed = VxlanConf.from_json(conf(nodes=[node("10.0.0.1", subnet)]))
    underlay = overlay.Underlay(
        2, "eth0", ipaddress.IPv4Address("10.0.0.1"), underlay_mtu
    )
    if expected is not None:
        assert overlay.overlay_mtu(parsed, underlay, ipv6) == expected
        return
    with pytest.raises(InvalidConfig) as err:
        overlay.overlay_mtu(parsed, underlay, ipv6)
    assert err.value.msg.startswith("mtu: underlay eth0 (mtu ")
    assert f"leaves {underlay_mtu - 50} " in err.value.msg and "1280" in err.value.msg


def test_a_configured_mtu_too_small_for_an_ipv6_lease_is_named() -> None:
    parsed = VxlanConf.from_json(
        conf(mtu=1200, nodes=[node("10.0.0.1", "10.1.0.0/24")])
    )
    underlay = overlay.Underlay(2, "eth0", ipaddress.IPv4Address("10.0.0.1"), 1500)
    with pytest.raises(InvalidConfig) as err:
        overlay.overlay_mtu(parsed, underlay, ipv6=True)
    assert err.value.msg == "mtu: 1200 is below the 1280 that IPv6 pods need"


def test_teardown_reads_only_what_del_needs() -> None:
    broken = conf(nodes=[{"underlayAddress": "nope"}], vni="x", stateDir="/s")
    parsed = TeardownConf.from_json(broken)
    assert (parsed.ipam_type, str(parsed.state_dir)) == ("mycni-ipam", "/s")


@given(
    st.text(min_size=1, max_size=300),
    st.text(min_size=1, max_size=15),
    st.sampled_from(["mc", "a", "ab12"]),
)
def test_host_veth_names_fit_the_kernel_and_start_with_the_prefix(
    cid: str, ifname: str, prefix: str
) -> None:
    name = veth.host_name(prefix, "net", cid, ifname)
    assert len(name.encode()) == 15 and name.startswith(prefix)
    assert name == veth.host_name(prefix, "net", cid, ifname)


def test_pod_routes_add_a_default_and_route_ipam_routes_via_the_gateway() -> None:
    ip = IPConfig(ipaddress.ip_interface("10.1.0.5/24"), None, 1)
    extra = (
        Route(ipaddress.ip_network("0.0.0.0/0")),
        Route(ipaddress.ip_network("10.9.0.0/16")),
    )
    gw = ipaddress.ip_address("10.1.0.1")
    assert routing.pod_routes((ip,), extra) == (
        Route(ipaddress.ip_network("0.0.0.0/0"), gw),
        Route(ipaddress.ip_network("10.9.0.0/16"), gw),
    )


def test_pod_routes_refuse_a_next_hop_the_pod_cannot_reach() -> None:
    ip = IPConfig(ipaddress.ip_interface("10.1.0.5/24"), None, 1)
    other = (
        Route(ipaddress.ip_network("10.9.0.0/16"), ipaddress.ip_address("10.1.0.7")),
    )
    with pytest.raises(InvalidConfig) as err:
        routing.pod_routes((ip,), other)
    assert "10.1.0.7" in err.value.msg
