"""Dual-stack pods with the vxlan plugin alone (no eBPF): IPv6 inside the overlay
next to IPv4, across nodes, on one node and to the node itself; the node state
behind it, CHECK, DEL, and the limits IPv6 puts on the config."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest

from tests import cluster
from tests import testbed as tb
from tests.cluster import Network, PodAt

IPAMS = ["mycni-ipam", "host-local"]


@pytest.fixture
def network(testbed: tb.Testbed, request: pytest.FixtureRequest) -> Iterator[Network]:
    """vxlan alone with dual-stack pod subnets; the IPAM type is the parameter."""
    net = Network(testbed, "mycni-vxlan-only", dual_stack=True)
    net.overrides["vxlan.ipam.type"] = getattr(request, "param", "mycni-ipam")
    try:
        yield net
    finally:
        net.delete_all()


def assert_reaches(src: PodAt | tb.Node, dst_ns: str | tb.Node, dst_ip: str) -> None:
    src_ns = src.pod.name if isinstance(src, PodAt) else src.name
    assert tb.ping(src_ns, dst_ip), f"ping {src_ns} -> {dst_ip} failed"
    exchange = tb.tcp_exchange(src_ns, dst_ns, dst_ip)
    assert exchange.reply == "hello mycni"


def device(network: Network) -> str:
    vni = json.loads(network.conflist(network.bed.node1).read_text())["plugins"][0]
    return f"mycni.{vni['vni']}"


def vtep6(network: Network, node: tb.Node) -> str:
    return str(cluster.pod_subnet6(network.bed, node).network_address)


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
@pytest.mark.parametrize("network", IPAMS, indirect=True)
def test_dual_stack_pods_reach_each_other_across_nodes(network: Network) -> None:
    n1, n2 = network.bed.nodes
    a, b = network.add(n1), network.add(n1)
    c = network.add(n2)
    assert ipaddress.ip_address(a.ip6) in cluster.pod_subnet6(network.bed, n1)
    assert c.ip6 != a.ip6 != b.ip6

    assert_reaches(a, c.pod.name, c.ip6)  # across nodes, both ways
    assert_reaches(c, a.pod.name, a.ip6)
    assert_reaches(a, c.pod.name, c.ip)  # IPv4 still
    assert_reaches(a, b.pod.name, b.ip6)  # same node
    for at in network.pods:
        at.node.driver.check(network.conflist(at.node), at.pod, at.container_id)


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_pods_and_nodes_reach_each_other_over_ipv6(network: Network) -> None:
    n1, n2 = network.bed.nodes
    a, c = network.add(n1), network.add(n2)

    assert_reaches(a, n1, vtep6(network, n1))  # pod to its own node
    assert_reaches(n1, a.pod.name, a.ip6)  # node to its own pod
    assert_reaches(n1, c.pod.name, c.ip6)  # node to a pod of the other node
    assert_reaches(a, n2, vtep6(network, n2))  # pod to the other node


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_full_size_ipv6_packets_cross_the_overlay(network: Network) -> None:
    """IPv6 never fragments on the way: the pod MTU must fit the VXLAN device's."""
    a, c = network.add(network.bed.node1), network.add(network.bed.node2)
    info = tb.link_info(network.bed.node1.name, device(network))
    pod_eth0 = tb.link_info(a.pod.name, "eth0")
    assert info is not None and pod_eth0 is not None
    assert pod_eth0["mtu"] == info["mtu"] == 1450

    payload = info["mtu"] - 40 - 8  # IPv6 and ICMPv6 headers
    ping = ["ping", "-n", "-q", "-c", "2", "-W", "1", "-M", "do"]
    full = a.pod.run([*ping, "-s", str(payload), c.ip6], check=False)
    assert full.returncode == 0, full.stdout + full.stderr
    over = a.pod.run([*ping, "-s", str(payload + 1), c.ip6], check=False)
    assert over.returncode != 0


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_the_node_routes_the_other_nodes_ipv6_subnet_through_its_vtep(
    network: Network,
) -> None:
    n1, n2 = network.bed.nodes
    network.add(n1)
    dev = device(network)
    peer = cluster.pod_subnet6(network.bed, n2)

    addrs = n1.run(["ip", "-6", "-j", "addr", "show", "dev", dev]).stdout
    mine = {(a["local"], a["prefixlen"]) for a in json.loads(addrs)[0]["addr_info"]}
    assert (vtep6(network, n1), 128) in mine
    routes = n1.run(["ip", "-6", "route", "show", str(peer)]).stdout
    assert f"{peer} via {vtep6(network, n2)} dev {dev}" in routes
    assert "onlink" in routes
    neigh = n1.run(["ip", "-6", "neigh", "show", vtep6(network, n2), "dev", dev])
    mac = ":".join(f"{b:02x}" for b in (0x02, 0x6D, *n2.address.ip.packed))
    assert f"lladdr {mac} PERMANENT" in neigh.stdout


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_check_fails_naming_a_missing_ipv6_peer_route_and_add_restores_it(
    network: Network,
) -> None:
    n1, n2 = network.bed.nodes
    a = network.add(n1)
    conflist = network.conflist(n1)
    n1.driver.check(conflist, a.pod, a.container_id)
    peer = cluster.pod_subnet6(network.bed, n2)

    n1.run(["ip", "-6", "route", "del", str(peer)])
    with pytest.raises(tb.CniCommandError) as err:
        n1.driver.check(conflist, a.pod, a.container_id)
    assert err.value.code == 104 and str(peer) in err.value.msg

    network.add(n1)  # the next ADD programs the peers again
    n1.driver.check(conflist, a.pod, a.container_id)


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_check_also_names_a_missing_ipv4_peer_route(network: Network) -> None:
    n1, n2 = network.bed.nodes
    a = network.add(n1)
    peer = cluster.pod_subnet(network.bed, n2)
    n1.run(["ip", "-4", "route", "del", str(peer)])
    with pytest.raises(tb.CniCommandError) as err:
        n1.driver.check(network.conflist(n1), a.pod, a.container_id)
    assert err.value.code == 104 and str(peer) in err.value.msg


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_check_fails_naming_a_missing_ipv6_vtep_neighbour(network: Network) -> None:
    n1, n2 = network.bed.nodes
    a = network.add(n1)
    n1.run(["ip", "-6", "neigh", "del", vtep6(network, n2), "dev", device(network)])
    with pytest.raises(tb.CniCommandError) as err:
        n1.driver.check(network.conflist(n1), a.pod, a.container_id)
    assert err.value.code == 104 and vtep6(network, n2) in err.value.msg


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_del_removes_the_pods_ipv6_state_and_can_be_repeated(
    network: Network,
) -> None:
    node = network.bed.node1
    routes = cluster.node_routes6(node)
    a, b = network.add(node), network.add(node)
    assert any(
        r.startswith(f"{a.ip6} dev {a.host_veth}") for r in cluster.node_routes6(node)
    )
    conflist = network.conflist(node)

    network.delete(a)
    node.driver.delete(conflist, a.pod, a.container_id)  # DEL twice
    network.delete(b)
    assert cluster.host_links(node) == set()
    assert cluster.leases(node) == []
    assert not [r for r in cluster.node_routes6(node) if " dev mc" in r]
    # What stays is node-wide: the routes to the other node, and the VTEP's.
    left = set(cluster.node_routes6(node)) - set(routes)
    assert all(device(network) in r for r in left), left


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_a_foreign_route_to_a_peers_ipv6_subnet_is_not_taken_over(
    network: Network,
) -> None:
    node = network.bed.node1
    other = cluster.pod_subnet6(network.bed, network.bed.node2)
    node.run(["ip", "-6", "route", "add", str(other), "dev", node.underlay])
    pod = network.bed.add_pod("taken")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "taken-pod")
    assert err.value.code == 101 and str(other) in err.value.msg
    assert any(
        r.startswith(f"{other} dev {node.underlay}") for r in cluster.node_routes6(node)
    )
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_a_new_pod_answers_ipv6_from_another_node_at_once(network: Network) -> None:
    """Within a second of ADD, as over IPv4: the node must not wait for DAD on the
    host veth before it can ask for the pod's MAC."""
    a = network.add(network.bed.node1)
    for _ in range(2):
        c = network.add(network.bed.node2)
        ping = ["ping", "-n", "-q", "-c", "1", "-W", "1", c.ip6]
        assert a.pod.run(ping, check=False).returncode == 0


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_an_ipv6_pod_subnet_over_the_underlays_link_local_network_is_refused(
    network: Network,
) -> None:
    """Routing fe80::/64 into the overlay would take the underlay's own IPv6."""
    node = network.bed.node1
    nodes = cluster.node_list(network.bed, dual_stack=True)
    nodes[1]["podSubnets"] = [nodes[1]["podSubnets"][0], "fe80::/64"]
    network.overrides["vxlan.nodes"] = nodes
    routes = cluster.node_routes6(node)
    pod = network.bed.add_pod("ll")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "ll-pod")
    assert err.value.code == 7
    assert err.value.msg.startswith("nodes[1].podSubnets[1]: fe80::/64 overlaps")
    assert cluster.node_routes6(node) == routes
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()


@pytest.mark.root(plugins=("vxlan", "mycni-ipam"))
def test_an_underlay_too_small_for_ipv6_is_refused_naming_the_mtu(
    network: Network,
) -> None:
    """Linux turns IPv6 off on a link below 1280 bytes (RFC 8200's minimum)."""
    node = network.bed.node1
    node.run(["ip", "link", "set", node.underlay, "mtu", "1300"])
    pod = network.bed.add_pod("small")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "small-pod")
    assert err.value.code == 7 and err.value.msg.startswith("mtu: ")
    assert "1280" in err.value.msg and "1250" in err.value.msg
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()
    assert tb.list_links(pod.name) == {"lo"}
