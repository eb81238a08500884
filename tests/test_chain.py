"""The full chain (vxlan + mycni-ipam + ebpf-redirect) through libcni: which path each
flow takes, shown by the program's counters and the host veths' own counters."""

from __future__ import annotations

import itertools

import pytest

from tests import cluster
from tests import testbed as tb
from tests.cluster import Network

PINGS = 5


@pytest.mark.root
def test_same_node_traffic_is_redirected_and_other_traffic_takes_the_stack(
    chain: Network,
) -> None:
    n1, n2 = chain.bed.nodes
    # A pod on node 2 gives that node its VXLAN device, the way back to node 1's pods.
    a, b, _ = chain.add(n1), chain.add(n1), chain.add(n2)
    assert tb.ping(a.pod.name, b.ip)  # warm up: neighbour entries on both pods

    before, b_veth = cluster.stats(n1), cluster.link_stats(n1, b.host_veth)
    assert tb.ping(a.pod.name, b.ip, count=PINGS)
    after, b_veth_after = cluster.stats(n1), cluster.link_stats(n1, b.host_veth)
    # Each echo request and each reply is redirected once, at the ingress of the
    # sender's host veth straight into the peer pod: b's host veth never transmits them.
    assert after["REDIRECTED"] - before["REDIRECTED"] >= 2 * PINGS
    assert b_veth_after["tx"] - b_veth["tx"] < PINGS

    before = cluster.stats(n1)
    assert tb.ping(a.pod.name, str(n1.address.ip), count=PINGS)  # to the node
    assert tb.ping(a.pod.name, str(n2.address.ip), count=PINGS)  # to the underlay
    after = cluster.stats(n1)
    # Requests to either node take n1's stack; node 2 routes its replies to a's
    # subnet into the overlay, and those reach a by redirect_peer.
    assert delta(before, after, "REDIRECTED", "REDIRECTED_NEIGH") == 0
    assert after["PASSED"] - before["PASSED"] >= 2 * PINGS
    assert delta(before, after, "REDIRECTED_OVERLAY_IN") >= PINGS

    exchange = tb.tcp_exchange(a.pod.name, b.pod.name, b.ip)
    assert exchange.reply == "hello mycni" and exchange.peer == a.ip


def delta(before: dict[str, int], after: dict[str, int], *names: str) -> int:
    return sum(after[n] - before[n] for n in names)


@pytest.mark.root
def test_cross_node_traffic_takes_neigh_out_and_peer_in_on_both_nodes(
    chain: Network,
) -> None:
    n1, n2 = chain.bed.nodes
    a, c = chain.add(n1), chain.add(n2)
    assert tb.ping(a.pod.name, c.ip)  # warm up

    before = {n.name: cluster.stats(n) for n in (n1, n2)}
    c_veth = cluster.link_stats(n2, c.host_veth)
    assert tb.ping(a.pod.name, c.ip, count=PINGS)
    after = {n.name: cluster.stats(n) for n in (n1, n2)}
    # Requests leave n1 by redirect_neigh into the VXLAN device and enter c from n2's
    # VXLAN device by redirect_peer; replies take the mirror path.
    for node in (n1, n2):
        was, now = before[node.name], after[node.name]
        assert delta(was, now, "REDIRECTED_NEIGH") >= PINGS, node.name
        assert delta(was, now, "REDIRECTED_OVERLAY_IN") >= PINGS, node.name
        assert delta(was, now, "REDIRECTED") == 0, node.name
    # redirect_peer hands frames to c's eth0 directly: its host veth sends none.
    assert cluster.link_stats(n2, c.host_veth)["tx"] - c_veth["tx"] < PINGS

    exchange = tb.tcp_exchange(a.pod.name, c.pod.name, c.ip)
    assert exchange.reply == "hello mycni" and exchange.peer == a.ip
    assert tb.tcp_exchange(c.pod.name, a.pod.name, a.ip).reply == "hello mycni"
    for at in (a, c):
        at.node.driver.check(chain.conflist(at.node), at.pod, at.container_id)


@pytest.mark.root
def test_endpoints_and_programs_follow_add_and_del(any_chain: Network) -> None:
    chain = any_chain
    node = chain.bed.node1
    mode = chain.overrides["ebpf-redirect.attachMode"]
    a, b = chain.add(node), chain.add(node)

    assert cluster.endpoints(node) == {
        a.ip: cluster.ifindex(node, a.host_veth),
        b.ip: cluster.ifindex(node, b.host_veth),
    }
    for at in (a, b):
        assert cluster.ingress_programs(node, at.host_veth) == [(mode, "from_pod")]
    vxlan = cluster.vxlan_device(node)
    assert cluster.ingress_programs(node, vxlan) == [(mode, "from_overlay")]

    chain.delete(a)
    node.driver.delete(chain.conflist(node), a.pod, a.container_id)  # DEL twice
    assert cluster.endpoints(node) == {b.ip: cluster.ifindex(node, b.host_veth)}
    chain.delete(b)
    assert cluster.endpoints(node) == {}
    assert cluster.host_links(node) == set()
    # Every pod's link pin went with its DEL; the overlay's stays with the device.
    links = node.pin_root / "links"
    assert sorted(p.name for p in links.glob("*")) == (
        [f"if{cluster.ifindex(node, vxlan)}-ingress"] if mode == "tcx" else []
    )


@pytest.mark.root
def test_pod_without_fast_path_still_reaches_a_redirected_pod(chain: Network) -> None:
    """Chained plugins fail independently: a pod on vxlan alone talks to chain pods."""
    node = chain.bed.node1
    a = chain.add(node)
    # The same network name (so the same IPAM pool) but container IDs of its own.
    plain = Network(chain.bed, "mycni-vxlan-only", _ids=itertools.count(100))
    try:
        b = plain.add(node)
        assert tb.ping(a.pod.name, b.ip) and tb.ping(b.pod.name, a.ip)
    finally:
        plain.delete_all()
