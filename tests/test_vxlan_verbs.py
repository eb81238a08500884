"""vxlan's CNI 1.1 verbs (run directly: Debian's libcni stops at 1.0.0), its
runtimeConfig capabilities and its CNI_ARGS rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import cluster
from tests import testbed as tb
from tests.cluster import Network


@pytest.fixture
def net(testbed: tb.Testbed) -> Iterator[Network]:
    network = Network(testbed, "mycni-vxlan-only")
    try:
        yield network
    finally:
        network.delete_all()


@pytest.mark.root
def test_gc_removes_only_attachments_the_runtime_no_longer_lists(net: Network) -> None:
    node = net.bed.node1
    keep, drop = net.add(node), net.add(node)
    config = cluster.plugin_config(
        net.conflist(node),
        "vxlan",
        **{
            "cni.dev/valid-attachments": [
                {"containerID": keep.container_id, "ifname": "eth0"}
            ]
        },
    )

    reply = cluster.run_plugin(node, "vxlan", "GC", config)
    assert (reply.code, reply.out) == (0, None), reply
    assert cluster.host_links(node) == {keep.host_veth}
    assert [lease[3] for lease in cluster.leases(node)] == [keep.container_id]
    assert tb.ping(keep.pod.name, str(node.address.ip))
    # The runtime's own DEL still succeeds for the collected attachment.
    net.delete(drop)


@pytest.mark.root
def test_gc_accepts_the_legacy_attachments_key(net: Network) -> None:
    node = net.bed.node1
    at = net.add(node)
    config = cluster.plugin_config(
        net.conflist(node),
        "vxlan",
        **{"cni.dev/attachments": [{"containerID": at.container_id, "ifname": "eth0"}]},
    )
    reply = cluster.run_plugin(node, "vxlan", "GC", config)
    assert reply.code == 0 and cluster.host_links(node) == {at.host_veth}


@pytest.mark.root
def test_gc_without_the_attachment_list_is_refused_and_removes_nothing(
    net: Network,
) -> None:
    node = net.bed.node1
    at = net.add(node)
    reply = cluster.run_plugin(
        node, "vxlan", "GC", cluster.plugin_config(net.conflist(node), "vxlan")
    )
    assert reply.out is not None and reply.out["code"] == 7
    assert "cni.dev/valid-attachments" in reply.out["msg"]
    assert cluster.host_links(node) == {at.host_veth} and len(cluster.leases(node)) == 1


@pytest.mark.root
def test_gc_with_a_pre_1_1_ipam_releases_leases_one_by_one(
    testbed: tb.Testbed,
) -> None:
    """Debian's host-local has no GC: vxlan's GC must DEL the lease itself."""
    net = Network(testbed, "mycni-host-local")
    node = testbed.node1
    try:
        keep, drop = net.add(node), net.add(node)
        valid = [{"containerID": keep.container_id, "ifname": "eth0"}]
        config = cluster.plugin_config(
            net.conflist(node), "vxlan", **{"cni.dev/valid-attachments": valid}
        )
        assert cluster.run_plugin(node, "vxlan", "GC", config).code == 0
        held = {p.name for p in node.ipam_dir.rglob("*") if p.name[0].isdigit()}
        assert held == {keep.ip}
        net.delete(drop)
    finally:
        net.delete_all()


@pytest.mark.root
def test_status_is_ready_and_names_a_missing_delegate(net: Network) -> None:
    node = net.bed.node1
    ready = cluster.plugin_config(net.conflist(node), "vxlan")
    assert cluster.run_plugin(node, "vxlan", "STATUS", ready).code == 0

    broken = dict(ready, ipam={**ready["ipam"], "type": "no-such-ipam"})
    reply = cluster.run_plugin(node, "vxlan", "STATUS", broken)
    assert reply.code == 1 and reply.out is not None
    assert reply.out["code"] == 50 and "no-such-ipam" in reply.out["msg"]


@pytest.mark.root
def test_status_and_gc_need_cni_1_1(net: Network) -> None:
    node = net.bed.node1
    config = cluster.plugin_config(net.conflist(node), "vxlan", cni_version="1.0.0")
    for verb in ("STATUS", "GC"):
        reply = cluster.run_plugin(node, "vxlan", verb, config)
        assert reply.out is not None and reply.out["code"] == 1, verb


@pytest.mark.root
def test_mac_capability_sets_the_pod_mac(net: Network) -> None:
    node = net.bed.node1
    pod = net.bed.add_pod("mac")
    conflist = net.conflist(node)
    result = node.driver.add(
        conflist, pod, "mac-pod", capability_args={"mac": "02:42:AC:11:00:09"}
    )
    try:
        assert result["interfaces"][1]["mac"] == "02:42:ac:11:00:09"
        info = tb.link_info(pod.name, "eth0")
        assert info is not None and info["address"] == "02:42:ac:11:00:09"
    finally:
        node.driver.delete(conflist, pod, "mac-pod")


@pytest.mark.root
def test_unknown_cni_args_are_refused_unless_ignore_unknown(net: Network) -> None:
    node = net.bed.node1
    pod = net.bed.add_pod("args")
    conflist = net.conflist(node)
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.add(conflist, pod, "args-pod", args={"FOO": "bar"})
    assert err.value.code == 4 and "FOO" in err.value.msg
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()

    pod_args = {"IgnoreUnknown": "1", "FOO": "bar", "K8S_POD_NAME": "web-0"}
    node.driver.add(conflist, pod, "args-pod", args=pod_args)
    node.driver.delete(conflist, pod, "args-pod", args=pod_args)


@pytest.mark.root
@pytest.mark.parametrize(
    ("where", "argv", "named"),
    [
        ("pod", ["ip", "addr", "flush", "dev", "eth0"], "is missing"),
        ("pod", ["ip", "route", "del", "default"], "0.0.0.0/0"),
        ("pod", ["ip", "link", "del", "eth0"], "eth0"),
        ("node", ["ip", "route", "del", "{ip}/32"], "{ip}"),
    ],
    ids=["pod-address", "pod-default-route", "pod-interface", "node-route"],
)
def test_check_names_what_went_missing(
    net: Network, where: str, argv: list[str], named: str
) -> None:
    node = net.bed.node1
    at = net.add(node)
    conflist = net.conflist(node)
    node.driver.check(conflist, at.pod, at.container_id)  # passes right after ADD

    ns = at.pod.name if where == "pod" else node.name
    tb.run_in(ns, [arg.format(ip=at.ip) for arg in argv])
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.check(conflist, at.pod, at.container_id)
    assert err.value.code == 104 and named.format(ip=at.ip) in err.value.msg


@pytest.mark.root
def test_check_fails_when_the_ipam_lost_the_reservation(net: Network) -> None:
    node = net.bed.node1
    at = net.add(node)
    conflist = net.conflist(node)
    inspect = [str(tb.BUILD_BIN / "mycni-ipam"), "inspect", "--data-dir"]
    released = tb.run(
        [
            *inspect,
            str(node.ipam_dir),
            "release",
            "--network",
            f"{net.bed.name}-net",
            "--address",
            at.ip,
        ]
    )
    assert at.ip in released
    with pytest.raises(tb.CniCommandError) as err:
        node.driver.check(conflist, at.pod, at.container_id)
    assert err.value.code == 3 and at.container_id in err.value.msg
