"""Ownership by container ID: a late DEL of an old sandbox never takes the endpoint,
filter or record of a newer sandbox that reuses its pod address or its host veth."""

from __future__ import annotations

import subprocess

import pytest

from tests import cluster
from tests import testbed as tb
from tests.cluster import Network, PodAt

PLUGIN = "ebpf-redirect"


def our_programs(node: tb.Node, dev: str) -> list[tuple[str, str]]:
    return [p for p in cluster.ingress_programs(node, dev) if p[1] == "from_pod"]


def records(node: tb.Node) -> set[str]:
    return {p.name for p in (node.state_dir / "ebpf-state").rglob("*.json")}


def add_with_ip(net: Network, node: tb.Node, ip: str, cid: str) -> PodAt:
    pod = net.bed.add_pod(f"p{node.index}")
    result = node.driver.add(net.conflist(node), pod, cid, args={"IP": ip})
    at = PodAt(pod, node, cid, result)
    net.pods.append(at)
    return at


def assert_intact(net: Network, b: PodAt, c: PodAt, remote: PodAt) -> None:
    node = b.node
    assert cluster.endpoints(node)[b.ip] == cluster.ifindex(node, b.host_veth)
    assert len(our_programs(node, b.host_veth)) == 1
    assert f"{b.container_id}.eth0.json" in records(node)
    node.driver.check(net.conflist(node), b.pod, b.container_id)
    assert tb.ping(c.pod.name, b.ip), "same node, fast path"
    assert tb.ping(remote.pod.name, b.ip), "from the other node, overlay ingress"


@pytest.mark.root
def test_late_del_of_an_old_sandbox_leaves_the_new_one_with_its_address(
    chain: Network,
) -> None:
    n1, n2 = chain.bed.nodes
    a, c, remote = chain.add(n1), chain.add(n1), chain.add(n2)
    # Sandbox A's veth goes without a DEL (the runtime lost it), and its address is
    # released by hand, as an operator or IPAM GC would.
    n1.run(["ip", "link", "del", a.host_veth])
    subprocess.run(
        [str(tb.BUILD_BIN / "mycni-ipam"), "inspect", "--data-dir", str(n1.ipam_dir),
         "release", "--network", f"{chain.bed.name}-net", "--address", a.ip],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    b = add_with_ip(chain, n1, a.ip, f"{chain.bed.name}-sandbox-b")
    assert b.ip == a.ip

    chain.delete(a)  # the late DEL, with A's record and the cached prevResult
    assert f"{a.container_id}.eth0.json" not in records(n1)
    assert_intact(chain, b, c, remote)


@pytest.mark.root
def test_recordless_del_naming_a_veth_now_owned_by_another_sandbox(
    chain: Network,
) -> None:
    """A plugin before us that names host veths after the pod (not the sandbox)
    hands sandbox B the veth name A had. A's late DEL has no record left (its ADD
    died, or state was wiped) and a prevResult naming that veth: B's record owns
    the veth now, so nothing of B's may go."""
    n1, n2 = chain.bed.nodes
    b, c, remote = chain.add(n1), chain.add(n1), chain.add(n2)
    late = cluster.plugin_config(
        chain.conflist(n1), PLUGIN, cniVersion="1.0.0", prevResult=b.result
    )
    env = {
        "CNI_CONTAINERID": f"{chain.bed.name}-sandbox-a",
        "CNI_NETNS": "",
        "CNI_IFNAME": "eth0",
    }
    for _ in range(2):
        reply = cluster.run_plugin(n1, PLUGIN, "DEL", late, **env)
        assert (reply.code, reply.out) == (0, None), reply
        assert "now belongs to" in reply.stderr
    assert_intact(chain, b, c, remote)
