"""ADD refuses a host interface that is not the veth whose peer is the pod's own
interface: the node's uplink, another pod's veth, a veth of the pod's other
interface. Each refusal leaves nothing behind and its DEL still succeeds."""

from __future__ import annotations

import ipaddress
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests import cluster
from tests import testbed as tb
from tests.cluster import Network, PodAt

PLUGIN = "ebpf-redirect"


def records(node: tb.Node) -> list[str]:
    return sorted(p.name for p in (node.state_dir / "ebpf-state").rglob("*.json"))


def fast_path_state(node: tb.Node, *devs: str) -> dict[str, Any]:
    """What an ADD could leave: records, link pins, map entries, programs, filters."""
    return {
        "records": records(node),
        "link pins": sorted(p.name for p in (node.pin_root / "links").glob("*")),
        "ep4": cluster.endpoints(node),
        "ep6": cluster.endpoints6(node),
        "programs": {dev: cluster.ingress_programs(node, dev) for dev in devs},
        "filters": {dev: cluster.tc_filters(node, dev) for dev in devs},
    }


def with_host(result: dict[str, Any], name: str) -> dict[str, Any]:
    prev = json.loads(json.dumps(result))
    prev["interfaces"][0]["name"] = name
    return prev


def env_of(
    at: PodAt, *, container_id: str = "", ifname: str = "eth0"
) -> dict[str, str]:
    return {
        "CNI_CONTAINERID": container_id or at.container_id,
        "CNI_NETNS": str(at.pod.path),
        "CNI_IFNAME": ifname,
    }


def assert_refused(
    net: Network, node: tb.Node, prev: dict[str, Any], env: dict[str, str], why: str
) -> None:
    """ADD answers 7 naming the field and why, changes nothing; DEL succeeds."""
    dev = prev["interfaces"][0]["name"]
    before = fast_path_state(node, dev)
    cfg = cluster.plugin_config(net.conflist(node), PLUGIN, "1.0.0", prevResult=prev)
    try:
        reply = cluster.run_plugin(node, PLUGIN, "ADD", cfg, **env)
        assert reply.out is not None and reply.out.get("code") == 7, reply
        msg = reply.out["msg"]
        assert msg.startswith(f"prevResult.interfaces[0].name: {dev} is not"), msg
        assert f"peer is {env['CNI_IFNAME']} in CNI_NETNS {env['CNI_NETNS']}" in msg
        assert why in msg, msg
        assert fast_path_state(node, dev) == before
    finally:
        # The runtime's DEL of the failed ADD; also undoes an ADD that wrongly passed.
        done = cluster.run_plugin(node, PLUGIN, "DEL", cfg, **env)
    assert (done.code, done.out) == (0, None), done
    assert fast_path_state(node, dev) == before


@pytest.fixture
def plain(chain: Network) -> Iterator[Network]:
    """Pods of vxlan alone on chain's testbed: veths no ebpf-redirect record owns."""
    net = Network(chain.bed, "mycni-vxlan-only", _ids=itertools.count(100))
    try:
        yield net
    finally:
        net.delete_all()


@pytest.mark.root
def test_add_refuses_the_nodes_uplink(any_chain: Network) -> None:
    """The uplink is a veth too, whose peer is in the other node."""
    chain = any_chain
    node = chain.bed.node1
    at, other = chain.add(node), chain.add(node)
    intruder = f"{chain.bed.name}-intruder"

    assert_refused(
        chain,
        node,
        with_host(at.result, node.underlay),
        env_of(at, container_id=intruder),
        "is in another namespace",
    )
    assert cluster.endpoints(node)[at.ip] == cluster.ifindex(node, at.host_veth)
    assert tb.ping(other.pod.name, at.ip)
    node.driver.check(chain.conflist(node), at.pod, at.container_id)


@pytest.mark.root
def test_add_refuses_another_pods_veth_that_no_record_owns(
    chain: Network, plain: Network
) -> None:
    node = chain.bed.node1
    at = chain.add(node)
    victim = plain.add(node)

    assert_refused(
        chain,
        node,
        with_host(at.result, victim.host_veth),
        env_of(at, container_id=f"{chain.bed.name}-intruder"),
        "is in another namespace",
    )
    assert cluster.ingress_programs(node, victim.host_veth) == []
    assert tb.ping(at.pod.name, victim.ip)


@pytest.mark.root
@pytest.mark.parametrize("has_eth1", [True, False], ids=["eth1-exists", "no-eth1"])
def test_add_refuses_a_veth_whose_peer_is_not_cni_ifname(
    chain: Network, plain: Network, has_eth1: bool
) -> None:
    """prevResult says the pod's eth1 is behind eth0's veth."""
    node = chain.bed.node1
    first = chain.add(node)  # loads the programs and attaches the overlay
    at = plain.add(node)
    if has_eth1:
        # No dummy driver here: a veth pair inside the pod gives it an eth1.
        at.pod.run(["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "e1p"])
    prev = json.loads(json.dumps(at.result))
    prev["interfaces"][1]["name"] = "eth1"
    why = "its peer is ifindex" if has_eth1 else "CNI_NETNS has no eth1"

    assert_refused(chain, node, prev, env_of(at, ifname="eth1"), why)

    # The same pod with prevResult as vxlan gave it goes on the fast path.
    cfg = cluster.plugin_config(
        chain.conflist(node), PLUGIN, "1.0.0", prevResult=at.result
    )
    reply = cluster.run_plugin(node, PLUGIN, "ADD", cfg, **env_of(at))
    assert reply.code == 0, reply
    assert cluster.endpoints(node)[at.ip] == cluster.ifindex(node, at.host_veth)
    assert tb.ping(first.pod.name, at.ip)
    done = cluster.run_plugin(node, PLUGIN, "DEL", cfg, **env_of(at))
    assert done.code == 0, done
    assert at.ip not in cluster.endpoints(node)


@pytest.mark.root
def test_add_refuses_a_pod_address_the_node_routes_elsewhere(dual: Network) -> None:
    """A forged prevResult once mapped another pod's address (and the gateway, the
    node's own address, a remote pod's) to the intruder: it took their traffic, and
    its DEL then deleted the victim's entry for good."""
    n1, n2 = dual.bed.nodes
    victim, remote = dual.add(n1), dual.add(n2)
    plain = Network(
        dual.bed, "mycni-vxlan-only", dual_stack=True, _ids=itertools.count(100)
    )
    try:
        intruder = plain.add(n1)  # vxlan alone; ebpf-redirect is run by hand below
        gw4, gw6 = (ip["gateway"] for ip in victim.result["ips"])
        intruder_veth = intruder.host_veth
        cases = {
            "same-node pod": (victim.ip, 32, "routed via " + victim.host_veth),
            "same-node pod v6": (victim.ip6, 128, "routed via " + victim.host_veth),
            "other node's pod": (remote.ip, 32, "routed via mycni."),
            "gateway": (gw4, 32, "an address of the node itself"),
            "gateway v6": (gw6, 128, "an address of the node itself"),
            "node underlay": (str(n1.address.ip), 32, "an address of the node"),
            "limited broadcast": ("255.255.255.255", 32, "not to " + intruder_veth),
            "v4-mapped v6": (
                f"::ffff:{victim.ip}",
                128,
                "not routed to " + intruder_veth,
            ),
        }
        before = fast_path_state(n1, victim.host_veth)
        for name, (address, prefix, why) in cases.items():
            prev = json.loads(json.dumps(intruder.result))
            prev["ips"] = [{"address": f"{address}/{prefix}", "interface": 1}]
            cfg = cluster.plugin_config(
                dual.conflist(n1), PLUGIN, "1.0.0", prevResult=prev
            )
            env = env_of(intruder)
            reply = cluster.run_plugin(n1, PLUGIN, "ADD", cfg, **env)
            assert reply.out is not None and reply.out.get("code") == 7, (name, reply)
            msg = reply.out["msg"]
            shown = ipaddress.ip_address(address)  # ::ffff:aa1:102 on Python 3.11
            assert msg.startswith(f"prevResult.ips: {shown} "), (name, msg)
            assert why in msg, (name, msg)
            done = cluster.run_plugin(n1, PLUGIN, "DEL", cfg, **env)
            assert (done.code, done.out) == (0, None), (name, done)
            assert fast_path_state(n1, victim.host_veth) == before, name
        n1.driver.check(dual.conflist(n1), victim.pod, victim.container_id)
        assert tb.ping(remote.pod.name, victim.ip6)
    finally:
        plain.delete_all()
