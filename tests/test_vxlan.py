"""The vxlan plugin through the real libcni on a two-node testbed: connectivity, the
result, DEL in its shapes, and errors that leave nothing behind."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from libcni.records import RecordStore
from tests import cluster
from tests import testbed as tb
from tests.cluster import Network, PodAt

CHAINS = ["mycni-vxlan-only", "mycni-host-local", "mycni-full"]


@pytest.fixture
def network(testbed: tb.Testbed, request: pytest.FixtureRequest) -> Iterator[Network]:
    net = Network(testbed, getattr(request, "param", "mycni-vxlan-only"))
    try:
        yield net
    finally:
        net.delete_all()


def assert_reaches(src: PodAt | tb.Node, dst_ns: str, dst_ip: str) -> None:
    src_ns = src.pod.name if isinstance(src, PodAt) else src.name
    assert tb.ping(src_ns, dst_ip), f"ping {src_ns} -> {dst_ip} failed"
    exchange = tb.tcp_exchange(src_ns, dst_ns, dst_ip)
    assert exchange.reply == "hello mycni"


@pytest.mark.root
@pytest.mark.parametrize("network", CHAINS, indirect=True)
def test_pods_reach_each_other_and_their_node(network: Network) -> None:
    n1, n2 = network.bed.nodes
    a, b = network.add(n1), network.add(n1)
    c = network.add(n2)

    assert_reaches(a, b.pod.name, b.ip)  # same node
    assert_reaches(a, c.pod.name, c.ip)  # across nodes
    assert_reaches(c, a.pod.name, a.ip)
    assert_reaches(a, n1.name, str(n1.address.ip))  # pod to its node
    assert_reaches(n1, a.pod.name, a.ip)  # node to its pod
    for at in network.pods:
        at.node.driver.check(network.conflist(at.node), at.pod, at.container_id)


@pytest.mark.root
def test_result_names_both_ends_and_the_pod_has_a_default_route(
    network: Network,
) -> None:
    at = network.add(network.bed.node1)
    host, pod = at.result["interfaces"]
    subnet = cluster.pod_subnet(network.bed, at.node)

    assert "sandbox" not in host and host["name"] in tb.list_links(at.node.name)
    assert pod == {"name": "eth0", "mac": pod["mac"], "sandbox": str(at.pod.path)}
    assert at.result["ips"] == [
        {"address": f"{at.ip}/24", "gateway": str(subnet[1]), "interface": 1}
    ]
    assert {"dst": "0.0.0.0/0", "gw": str(subnet[1])} in at.result["routes"]
    routes = at.pod.run(["ip", "-4", "route", "show", "default"]).stdout
    assert f"default via {subnet[1]} dev eth0" in routes
    assert f"{at.ip} dev {at.host_veth}" in "\n".join(cluster.node_routes(at.node))


@pytest.mark.root
def test_vxlan_device_follows_the_config_and_the_underlay(network: Network) -> None:
    at = network.add(network.bed.node1)
    vni = json.loads(network.conflist(at.node).read_text())["plugins"][0]["vni"]
    info = tb.link_info(at.node.name, f"mycni.{vni}")
    underlay = tb.link_info(at.node.name, at.node.underlay)
    assert info is not None and underlay is not None

    data = info["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data["local"]) == (
        vni,
        4789,
        str(at.node.address.ip),
    )
    assert info["mtu"] == underlay["mtu"] - 50
    pod_eth0 = tb.link_info(at.pod.name, "eth0")
    assert pod_eth0 is not None and pod_eth0["mtu"] == info["mtu"]
    # A second ADD finds the device and checks it rather than failing on EEXIST.
    network.add(network.bed.node1)


@pytest.mark.root
def test_a_foreign_device_under_our_vxlan_name_is_refused(network: Network) -> None:
    node = network.bed.node1
    vni = json.loads(network.conflist(node).read_text())["plugins"][0]["vni"]
    foreign = ["type", "vxlan", "id", str(vni + 1), "dstport", "4789", "nolearning"]
    node.run(["ip", "link", "add", f"mycni.{vni}", *foreign])
    with pytest.raises(tb.CniCommandError) as err:
        network.add(node)
    assert err.value.code == 101
    assert "vni" in err.value.msg and str(vni + 1) in err.value.msg
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()


@pytest.mark.root
def test_del_twice_and_after_the_pod_namespace_is_gone(network: Network) -> None:
    node = network.bed.node1
    first, second = network.add(node), network.add(node)
    conflist = network.conflist(node)

    network.delete(first)
    node.driver.delete(conflist, first.pod, first.container_id)  # DEL twice

    network.bed.remove_pod(second.pod)
    node.driver.delete(conflist, None, second.container_id)  # netns already gone
    network.pods.remove(second)
    assert cluster.host_links(node) == set()
    assert cluster.leases(node) == []
    assert not [r for r in cluster.node_routes(node) if " dev mc" in r]


@pytest.mark.root
def test_an_existing_interface_in_the_pod_is_an_error_and_takes_nothing(
    network: Network,
) -> None:
    node = network.bed.node1
    pod = network.bed.add_pod("busy")
    pod.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0"])

    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "busy-pod")
    assert err.value.code == 101 and "eth0" in err.value.msg
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()


@pytest.mark.root
def test_the_nodes_own_namespace_is_refused_as_a_pod(network: Network) -> None:
    """A runtime bug must not let ADD replace the node's own default route."""
    node = network.bed.node1
    routes = cluster.node_routes(node)
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), node.name, "self-pod")
    assert err.value.code == 4 and "CNI_NETNS" in err.value.msg
    assert cluster.node_routes(node) == routes
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()


@pytest.mark.root
def test_an_ipam_route_via_another_gateway_is_refused_cleanly(
    network: Network,
) -> None:
    node = network.bed.node1
    subnet = cluster.pod_subnet(network.bed, node)
    network.overrides["vxlan.ipam.routes"] = [
        {"dst": "10.250.0.0/16", "gw": str(subnet[7])}
    ]
    pod = network.bed.add_pod("gw")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "gw-pod")
    assert err.value.code == 7 and str(subnet[7]) in err.value.msg
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()
    assert tb.list_links(pod.name) == {"lo"}


@pytest.mark.root
def test_del_succeeds_when_the_config_no_longer_validates(network: Network) -> None:
    """An operator's broken edit of the node list must not strand pods on DEL."""
    node = network.bed.node1
    at = network.add(node)
    network.overrides["vxlan.nodes"] = [{"underlayAddress": "not-an-address"}]
    network.delete(at)
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()


@pytest.mark.root
@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("vxlan.vni", "42", "vni"),
        ("vxlan.mtu", -1, "mtu"),
        ("vxlan.port", 70000, "port"),
        (
            "vxlan.nodes",
            [{"underlayAddress": "nope", "podSubnet": "10.9.0.0/24"}],
            "nodes[0]",
        ),
        ("vxlan.ipam", None, "ipam"),
    ],
    ids=["vni-string", "mtu-negative", "port-too-large", "node-bad-address", "no-ipam"],
)
def test_bad_config_is_error_7_naming_the_field_and_leaves_nothing(
    network: Network, key: str, value: Any, named: str
) -> None:
    node = network.bed.node1
    network.overrides[key] = value
    pod = network.bed.add_pod("bad")

    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "bad-config")
    assert err.value.code == 7 and err.value.msg.startswith(named)
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()
    assert tb.list_links(pod.name) == {"lo"}


@pytest.mark.root
@pytest.mark.parametrize("network", ["mycni-full", "mycni-host-local"], indirect=True)
def test_an_exhausted_range_is_a_clean_error_that_leaves_nothing(
    network: Network,
) -> None:
    node = network.bed.node1
    subnet = cluster.pod_subnet(network.bed, node)
    network.overrides["vxlan.ipam.ranges"] = [
        [
            {
                "subnet": str(subnet),
                "rangeStart": str(subnet[10]),
                "rangeEnd": str(subnet[10]),
            }
        ]
    ]
    first = network.add(node)
    links, routes = cluster.host_links(node), cluster.node_routes(node)
    endpoints = cluster.endpoints(node)
    pod = network.bed.add_pod("late")

    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "late-pod")
    assert "<nil>" not in err.value.msg and "None" not in err.value.msg
    if network.source == "mycni-full":
        assert err.value.code == 100
        assert network.conflist(node).exists()
        assert (
            f"{network.bed.name}-net" in err.value.msg and str(subnet) in err.value.msg
        )
    assert cluster.host_links(node) == links
    assert cluster.node_routes(node) == routes
    assert cluster.endpoints(node) == endpoints
    assert tb.list_links(pod.name) == {"lo"}
    assert first.ip == str(subnet[10])


@pytest.mark.root
def test_reference_bridge_runs_on_mycni_ipam(testbed: tb.Testbed) -> None:
    node = testbed.node1
    subnet = cluster.pod_subnet(testbed, node)
    conflist = {
        "cniVersion": "1.0.0",
        "name": f"{testbed.name}-br",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "mcbr0",
                "isGateway": True,
                "ipam": {
                    "type": "mycni-ipam",
                    "ranges": [[{"subnet": str(subnet)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }
    path = node.state_dir / "bridge.conflist"
    path.write_text(json.dumps(node.render_conflist(conflist)))
    pods = [testbed.add_pod("br") for _ in range(2)]
    results = []
    try:
        for i, pod in enumerate(pods):
            results.append(node.driver.add(path, pod, f"br-{i}"))
        ips = [r["ips"][0]["address"].split("/")[0] for r in results]
        assert len(set(ips)) == 2
        assert all(ipaddress.ip_address(ip) in subnet for ip in ips)
        assert tb.ping(pods[0].name, ips[1])
        node.driver.check(path, pods[0], "br-0")
    finally:
        for i, pod in enumerate(pods[: len(results)]):
            node.driver.delete(path, pod, f"br-{i}")
    assert cluster.leases(node) == []


@pytest.mark.root
def test_a_pod_subnet_over_the_underlay_is_refused_and_the_node_keeps_its_routes(
    network: Network,
) -> None:
    node = network.bed.node1
    routes = cluster.node_routes(node)
    underlay = str(node.address.network)
    network.overrides["vxlan.nodes"] = [
        {"underlayAddress": str(node.address.ip), "podSubnet": "10.99.1.0/24"},
        {"underlayAddress": "172.31.0.2", "podSubnet": underlay},
    ]
    pod = network.bed.add_pod("over")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "over-pod")
    assert err.value.code == 7 and "nodes[1].podSubnet" in err.value.msg
    assert cluster.node_routes(node) == routes


@pytest.mark.root
def test_a_failed_add_leaves_the_overlay_untouched(network: Network) -> None:
    """A missing IPAM must not create a device or move routes to other nodes."""
    node = network.bed.node1
    network.add(node)
    routes, links = cluster.node_routes(node), tb.list_links(node.name)
    network.overrides["vxlan.vni"] = 4242
    network.overrides["vxlan.vxlanDevice"] = "mycni.other"
    network.overrides["vxlan.ipam.type"] = "no-such-ipam"
    pod = network.bed.add_pod("noipam")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "noipam-pod")
    assert "no-such-ipam" in err.value.msg
    assert cluster.node_routes(node) == routes
    assert tb.list_links(node.name) == links
    network.overrides.clear()


@pytest.mark.root
def test_a_route_of_another_device_is_not_taken_over(network: Network) -> None:
    node = network.bed.node1
    other = cluster.pod_subnet(network.bed, network.bed.node2)
    node.run(["ip", "route", "add", str(other), "dev", node.underlay])
    pod = network.bed.add_pod("taken")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "taken-pod")
    assert err.value.code == 101 and str(other) in err.value.msg
    assert any(
        r.startswith(f"{other} dev {node.underlay}") for r in cluster.node_routes(node)
    )
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()


@pytest.mark.root
def test_a_second_interface_does_not_take_the_first_ones_routes(
    network: Network,
) -> None:
    node = network.bed.node1
    first = network.add(node)
    conflist = network.conflist(node)
    node.driver.add(conflist, first.pod, first.container_id, ifname="net1")
    try:
        node.driver.check(conflist, first.pod, first.container_id)
        assert tb.ping(first.pod.name, str(node.address.ip))
    finally:
        node.driver.delete(conflist, first.pod, first.container_id, ifname="net1")
    node.driver.check(conflist, first.pod, first.container_id)
    assert tb.ping(first.pod.name, str(node.address.ip))


@pytest.mark.root
def test_a_config_with_another_mtu_is_refused_and_the_device_kept(
    network: Network,
) -> None:
    node = network.bed.node1
    first = network.add(node)
    device = next(n for n in tb.list_links(node.name) if n.startswith("mycni."))
    network.overrides["vxlan.mtu"] = 1400
    pod = network.bed.add_pod("mtu")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "mtu-pod")
    assert err.value.code == 101 and "1400" in err.value.msg
    info = tb.link_info(node.name, device)
    assert info is not None and info["mtu"] == 1450
    assert cluster.host_links(node) == {first.host_veth}
    network.overrides.clear()


@pytest.mark.root
def test_an_ipam_range_of_another_node_is_refused_and_released(
    network: Network,
) -> None:
    node = network.bed.node1
    theirs = cluster.pod_subnet(network.bed, network.bed.node2)
    network.overrides["vxlan.ipam.ranges"] = [[{"subnet": str(theirs)}]]
    pod = network.bed.add_pod("range")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(network.conflist(node), pod, "range-pod")
    assert err.value.code == 7 and err.value.msg.startswith("ipam: ")
    assert str(theirs[2]) in err.value.msg
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()
    network.overrides.clear()


def vxlan_devices(node: tb.Node) -> set[str]:
    return {name for name in tb.list_links(node.name) if name.startswith("mycni.")}


@pytest.mark.root
def test_a_failed_first_add_removes_the_vxlan_device_it_created(
    network: Network,
) -> None:
    """It once stayed: a corrected config, or another vni, then met a stray device."""
    n1, n2 = network.bed.nodes
    peer = str(cluster.pod_subnet(network.bed, n2))
    n1.run(["ip", "route", "add", peer, "dev", n1.underlay])  # someone else's route
    with pytest.raises(tb.CniCommandError) as err:
        network.add(n1)
    assert err.value.code == 101 and peer in err.value.msg
    assert vxlan_devices(n1) == set()
    assert cluster.leases(n1) == [] and cluster.host_links(n1) == set()

    n1.run(["ip", "route", "del", peer, "dev", n1.underlay])
    at = network.add(n1)
    assert len(vxlan_devices(n1)) == 1
    assert tb.ping(at.pod.name, str(cluster.pod_subnet(network.bed, n1)[1]))


@pytest.mark.root
def test_an_address_routed_to_another_pod_is_not_taken_over(network: Network) -> None:
    """An IPAM that forgot a running pod's lease (as after swapping host-local for
    mycni-ipam) hands its address out again; the node route used to be replaced,
    cutting the running pod off."""
    node = network.bed.node1
    holder = network.add(node)
    tb.run([str(tb.BUILD_BIN / "mycni-ipam"), "inspect", "--data-dir",
            str(node.ipam_dir), "release", "--network", f"{network.bed.name}-net",
            "--address", holder.ip])  # fmt: skip
    links_before = cluster.host_links(node)
    newcomer = network.bed.add_pod("new")
    with pytest.raises(tb.CniCommandError) as err:  # asks for that address (IP=)
        node.driver.add(network.conflist(node), newcomer, f"{network.bed.name}-new",
                        args={"IP": holder.ip})  # fmt: skip
    assert err.value.code == 101, err.value
    assert f"pod address {holder.ip}" in err.value.msg
    assert f"routed to {holder.host_veth} already" in err.value.msg
    assert cluster.host_links(node) == links_before and cluster.leases(node) == []
    assert tb.ping(node.name, holder.ip)  # the node still reaches the running pod


@pytest.mark.root
def test_a_failed_first_add_keeps_the_device_when_another_add_recorded_itself(
    network: Network,
) -> None:
    """A second first-ADD of the network, running at the same time, records itself
    before it looks for the device; the failing one must not pull it away."""
    n1, n2 = network.bed.nodes
    peer = str(cluster.pod_subnet(network.bed, n2))
    state = n1.state_dir / "vxlan-state"
    store = RecordStore.for_network(state, f"{network.bed.name}-net")
    store.save("concurrent-add", "eth0", {"hostVeth": "mc-elsewhere"})
    n1.run(["ip", "route", "add", peer, "dev", n1.underlay])
    try:
        with pytest.raises(tb.CniCommandError) as err:
            network.add(n1)
        assert err.value.code == 101
        assert len(vxlan_devices(n1)) == 1
        assert cluster.leases(n1) == [] and cluster.host_links(n1) == set()
    finally:
        store.remove_quietly("concurrent-add", "eth0")
        n1.run(["ip", "route", "del", peer, "dev", n1.underlay])
    network.add(n1)  # finds the device left behind and uses it
