"""ebpf-redirect in a chain: after a plugin that shares one host device between pods,
with a corrupt record of its own, and handing prevResult on untouched."""

from __future__ import annotations

import itertools
import json

import pytest

from tests import cluster
from tests import testbed as tb
from tests.cluster import Network


@pytest.mark.root
def test_after_a_bridge_it_refuses_instead_of_sharing_one_filter(
    testbed: tb.Testbed,
) -> None:
    node = testbed.node1
    subnet = cluster.pod_subnet(testbed, node)
    conflist = {
        "cniVersion": "1.0.0",
        "name": f"{testbed.name}-br",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "mcbr1",
                "isGateway": True,
                "ipam": {"type": "mycni-ipam", "ranges": [[{"subnet": str(subnet)}]]},
            },
            {"type": "ebpf-redirect", "stateDir": str(node.state_dir / "ebpf")},
        ],
    }
    path = node.state_dir / "bridge-ebpf.conflist"
    path.write_text(json.dumps(node.render_conflist(conflist)))
    pod = testbed.add_pod("br")

    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(path, pod, "br-pod")
    assert err.value.code == 7 and "mcbr1" in err.value.msg and "veth" in err.value.msg
    node.driver.delete(path, pod, "br-pod")  # the runtime cleans up the chain
    assert cluster.leases(node) == []
    assert cluster.endpoints(node) == {}


@pytest.mark.root
def test_del_survives_a_corrupt_record(testbed: tb.Testbed) -> None:
    net = Network(testbed, "mycni-full")
    node = testbed.node1
    try:
        at = net.add(node)
        records = list((node.state_dir / "ebpf-state").rglob("*.json"))
        assert len(records) == 1
        records[0].write_text('{"containerId": "torn')
        net.delete(at)  # through libcni, which sends prevResult
        assert cluster.endpoints(node) == {}
        assert not records[0].exists()
        node.driver.delete(net.conflist(node), at.pod, at.container_id)
    finally:
        net.delete_all()


@pytest.mark.root
def test_prev_result_is_handed_on_with_fields_we_do_not_model(
    testbed: tb.Testbed,
) -> None:
    net = Network(testbed, "mycni-full")
    node = testbed.node1
    try:
        at = net.add(node)  # the whole chain, so the program and maps exist
        prev = {**at.result, "cniVersion": "1.1.0"}
        prev["routes"] = [{**r, "mtu": 1400, "table": 100} for r in prev["routes"]]
        prev["interfaces"][1]["socketPath"] = "/run/example.sock"
        config = cluster.plugin_config(
            net.conflist(node), "ebpf-redirect", prevResult=prev
        )
        env = {
            "CNI_CONTAINERID": at.container_id,
            "CNI_IFNAME": "eth0",
            "CNI_NETNS": str(at.pod.path),
        }
        reply = cluster.run_plugin(node, "ebpf-redirect", "ADD", config, **env)
        assert reply.code == 0, reply
        assert reply.out == prev
    finally:
        net.delete_all()


@pytest.mark.root
def test_vxlan_device_naming_the_uplink_is_refused(chain: Network) -> None:
    node = chain.bed.node1
    chain.overrides["ebpf-redirect.vxlanDevice"] = node.underlay
    pod = chain.bed.add_pod("uplink")
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(chain.conflist(node), pod, "uplink-pod")
    assert err.value.code == 7 and "not a VXLAN device" in err.value.msg
    filters = node.run(["tc", "filter", "show", "dev", node.underlay, "ingress"])
    assert filters.stdout == ""
    node.driver.delete(chain.conflist(node), pod, "uplink-pod")
    chain.overrides.clear()


@pytest.mark.root
def test_another_kind_of_filter_at_our_priority_is_a_conflict(
    tc_chain: Network,
) -> None:
    """Not a silent fallback to the stack: the operator must pick a priority."""
    chain = tc_chain
    node = chain.bed.node1
    first = chain.add(node)  # the program is loaded, the overlay attached
    # A pod of vxlan alone gets the foreign filter on its veth; then ebpf-redirect's
    # ADD is chained onto it by hand, as the runtime would.
    plain = Network(chain.bed, "mycni-vxlan-only", _ids=itertools.count(100))
    try:
        at = plain.add(node)
        node.run(["tc", "qdisc", "add", "dev", at.host_veth, "clsact"])
        u32 = ["protocol", "ip", "u32", "match", "u32", "0", "0", "classid", "1:1"]
        node.run(
            ["tc", "filter", "add", "dev", at.host_veth, "ingress", "pref", "1", *u32]
        )
        config = cluster.plugin_config(
            chain.conflist(node), "ebpf-redirect", "1.0.0", prevResult=at.result
        )
        env = {
            "CNI_CONTAINERID": at.container_id,
            "CNI_IFNAME": "eth0",
            "CNI_NETNS": str(at.pod.path),
        }
        reply = cluster.run_plugin(node, "ebpf-redirect", "ADD", config, **env)
        assert reply.out is not None and reply.out.get("code") == 101, reply
        assert "choose another priority" in reply.out["msg"]
        assert at.ip not in cluster.endpoints(node)
        assert tb.ping(at.pod.name, first.ip)
    finally:
        plain.delete_all()
