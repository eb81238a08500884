"""IPv6 pods on the fast path, on the two-node testbed with dual-stack pods: the path
of each flow proven by the programs' counters, both families in one run, and the
mycni_ep6 entries through DEL, GC, CHECK and explain."""

from __future__ import annotations

import json
from ipaddress import IPv6Address
from typing import Any

import pytest

from mycni_ebpf_redirect.pins import Pins
from tests import cluster
from tests import testbed as tb
from tests.cluster import Network, PodAt

PLUGIN = "ebpf-redirect"
EXE = tb.BUILD_BIN / PLUGIN
PINGS = 3


def moved(node: tb.Node, before: dict[str, int]) -> dict[str, int]:
    after = cluster.stats(node)
    return {name: after[name] - before[name] for name in after}


def ipv4_share(delta: dict[str, int], path: str) -> int:
    """How many IPv4 frames a path counter moved (it counts both families)."""
    return delta[path] - delta[f"{path}_V6"]


def exchange(src: PodAt, dst: PodAt, ip: str) -> None:
    assert tb.ping(src.pod.name, ip, count=PINGS), f"ping {src.ip} -> {ip}"
    reply = tb.tcp_exchange(src.pod.name, dst.pod.name, ip).reply
    assert reply == "hello mycni", f"tcp {src.ip} -> {ip}"


@pytest.mark.root
def test_same_node_flows_of_both_families_are_redirected(dual: Network) -> None:
    node = dual.bed.node1
    a, b = dual.add(node), dual.add(node)
    assert set(cluster.endpoints(node)) == {a.ip, b.ip}
    assert cluster.endpoints6(node) == {
        a.ip6: cluster.ifindex(node, a.host_veth),
        b.ip6: cluster.ifindex(node, b.host_veth),
    }

    before = cluster.stats(node)
    exchange(a, b, b.ip6)
    v6 = moved(node, before)
    # Each echo request and reply: a's veth to b and back.
    assert v6["REDIRECTED_V6"] >= 2 * PINGS, v6
    assert ipv4_share(v6, "REDIRECTED") == 0, v6

    before = cluster.stats(node)
    exchange(b, a, a.ip)
    v4 = moved(node, before)
    assert ipv4_share(v4, "REDIRECTED") >= 2 * PINGS, v4
    assert v4["REDIRECTED_V6"] == 0, v4
    for at in (a, b):
        at.node.driver.check(dual.conflist(node), at.pod, at.container_id)


@pytest.mark.root
def test_cross_node_flows_of_both_families_take_neigh_out_and_peer_in(
    dual: Network,
) -> None:
    n1, n2 = dual.bed.nodes
    a, c = dual.add(n1), dual.add(n2)
    for ip, family in ((c.ip6, "_V6"), (c.ip, "")):
        before1, before2 = cluster.stats(n1), cluster.stats(n2)
        exchange(a, c, ip)
        out, into = moved(n1, before1), moved(n2, before2)
        if family:
            sent, received = (
                out["REDIRECTED_NEIGH_V6"],
                into["REDIRECTED_OVERLAY_IN_V6"],
            )
        else:
            sent = ipv4_share(out, "REDIRECTED_NEIGH")
            received = ipv4_share(into, "REDIRECTED_OVERLAY_IN")
        # Every echo request leaves node 1 by redirect_neigh and enters node 2's
        # pod by redirect_peer (the replies take the mirror path).
        assert sent >= PINGS and received >= PINGS, (ip, out, into)
        assert ipv4_share(out, "REDIRECTED_NEIGH") == (0 if family else sent)


def bpftool_ep6(node: tb.Node, verb: str, ip: str) -> None:
    key = ["key", "hex", *(f"{b:02x}" for b in IPv6Address(ip).packed)]
    node.run(["bpftool", "map", verb, "pinned", str(Pins(node.pin_root).ep6), *key])


def config(net: Network, node: tb.Node, **extra: Any) -> dict[str, Any]:
    return cluster.plugin_config(net.conflist(node), PLUGIN, **extra)


@pytest.mark.root
def test_check_names_a_missing_ipv6_entry_and_del_and_gc_remove_them(
    dual: Network,
) -> None:
    node = dual.bed.node1
    a, b, c = dual.add(node), dual.add(node), dual.add(node)

    bpftool_ep6(node, "delete", a.ip6)
    with pytest.raises(tb.CniCommandError) as info:
        node.driver.check(dual.conflist(node), a.pod, a.container_id)
    assert info.value.code == 104, info.value
    assert f"endpoint {a.ip6} is missing from mycni_ep6" in info.value.msg

    dual.delete(b)
    assert set(cluster.endpoints6(node)) == {c.ip6}  # a's was deleted by hand
    assert set(cluster.endpoints(node)) == {a.ip, c.ip}

    keep = {"cni.dev/valid-attachments": [{"containerID": a.container_id,
                                           "ifname": "eth0"}]}  # fmt: skip
    reply = cluster.run_plugin(node, PLUGIN, "GC", config(dual, node, **keep))
    assert (reply.code, reply.out) == (0, None), reply
    assert cluster.endpoints6(node) == {} and set(cluster.endpoints(node)) == {a.ip}


def inspect(node: tb.Node, *argv: str) -> Any:
    proc = node.run(
        [str(EXE), "inspect", "--pin-root", str(node.pin_root), "--state-dir",
         str(node.state_dir / "ebpf-state"), "--json", *argv],
        check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.mark.root
def test_inspect_lists_ipv6_endpoints_and_explains_same_node_paths(
    dual: Network,
) -> None:
    node = dual.bed.node1
    a, b = dual.add(node), dual.add(node)
    rows = {r["address"]: r for r in inspect(node, "endpoints")["endpoints"]}
    assert set(rows) == {a.ip, a.ip6, b.ip, b.ip6}
    assert {rows[ip]["mapEntry"] for ip in (a.ip6, b.ip6)} == {"ok"}

    gateway = str(cluster.pod_subnet6(dual.bed, node)[1])  # on every host veth
    cases = [
        (a.ip6, b.ip6, 7, "REDIRECTED_V6"),
        (a.ip6, gateway, -1, "PASSED_V6"),  # the node itself: the stack
    ]
    for src, dst, verdict, counter in cases:
        found = inspect(node, "explain", src, dst)
        assert found["expected"] == {"verdict": verdict, "counter": counter}, found
        assert found["testRun"]["verdict"] == verdict, found
        assert found["agrees"] is True, found
    assert (
        "mycni_ep6[" in inspect(node, "explain", a.ip6, b.ip6)["steps"]["destination"]
    )


@pytest.mark.root
def test_explain_agrees_on_the_cross_node_ipv6_paths(dual: Network) -> None:
    n1, n2 = dual.bed.nodes
    a, c = dual.add(n1), dual.add(n2)
    cases = [
        (n1, a.ip6, c.ip6, "REDIRECTED_NEIGH_V6"),  # out of node 1
        (n2, a.ip6, c.ip6, "REDIRECTED_OVERLAY_IN_V6"),  # into node 2's pod
    ]
    for node, src, dst, counter in cases:
        found = inspect(node, "explain", src, dst)
        assert found["expected"] == {"verdict": 7, "counter": counter}, found
        assert found["agrees"] is True, found
