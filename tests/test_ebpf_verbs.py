"""ebpf-redirect's CNI 1.1 verbs (run directly: Debian's libcni stops at 1.0.0),
CHECK naming what is missing, and living next to other users' tc filters."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from mycni_ebpf_redirect.pins import Pins
from tests import cluster
from tests import testbed as tb
from tests.cluster import Network, PodAt
from tests.ebpf_fixtures import compile_bpf

PLUGIN = "ebpf-redirect"
# A classic BPF filter that matches nothing (returns 0 outside direct-action mode):
# someone else's filter that leaves our verdicts alone.
FOREIGN = ["bpf", "bytecode", "1,6 0 0 0,"]


def config(net: Network, node: tb.Node, **extra: Any) -> dict[str, Any]:
    return cluster.plugin_config(net.conflist(node), PLUGIN, **extra)


def keep_only(*pods: PodAt, key: str = "cni.dev/valid-attachments") -> dict[str, Any]:
    return {key: [{"containerID": p.container_id, "ifname": "eth0"} for p in pods]}


def pod_env(at: PodAt) -> dict[str, str]:
    return {
        "CNI_CONTAINERID": at.container_id,
        "CNI_NETNS": str(at.pod.path),
        "CNI_IFNAME": "eth0",
    }


def ours(node: tb.Node, dev: str) -> list[tuple[str, str]]:
    """Our programs on dev's ingress, tcx links and tc filters alike."""
    return [p for p in cluster.ingress_programs(node, dev) if p[1].startswith("from_")]


def our_filters(node: tb.Node, dev: str) -> list[dict[str, Any]]:
    return [
        f
        for f in cluster.tc_filters(node, dev)
        if "from_" in f.get("options", {}).get("bpf_name", "")
    ]


def foreign(node: tb.Node, dev: str) -> list[dict[str, Any]]:
    return [
        f for f in cluster.tc_filters(node, dev) if "bytecode" in f.get("options", {})
    ]


def records(node: tb.Node) -> list[str]:
    return sorted(p.name for p in (node.state_dir / "ebpf-state").rglob("*.json"))


# --- STATUS ------------------------------------------------------------------------


@pytest.mark.root
def test_status_is_ready_and_names_each_thing_an_add_would_miss(
    chain: Network, tmp_path: Path
) -> None:
    node = chain.bed.node1
    ready = config(chain, node)
    assert cluster.run_plugin(node, PLUGIN, "STATUS", ready).code == 0

    not_a_dir = node.state_dir / "plain-file"
    not_a_dir.write_text("")
    # A PATH with nothing but nsenter, which runs the plugin in the node.
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "nsenter").symlink_to(shutil.which("nsenter") or "/usr/bin/nsenter")
    cases = [
        ({"bpfObjectDir": str(tmp_path)}, {}, ["from_pod.bpf.o", "from_overlay.bpf.o"]),
        ({}, {"PATH": str(bare)}, ["tc not found", "bpftool not found"]),
        ({"pinRoot": str(not_a_dir / "pins")}, {}, ["is not a directory"]),
    ]
    for extra, env, words in cases:
        reply = cluster.run_plugin(node, PLUGIN, "STATUS", {**ready, **extra}, **env)
        assert reply.code == 1 and reply.out is not None, reply
        assert reply.out["code"] == 50, reply.out
        for word in words:
            assert word in reply.out["msg"], reply.out["msg"]


@pytest.mark.root
def test_status_needs_cni_1_1(chain: Network) -> None:
    node = chain.bed.node1
    for verb in ("STATUS", "GC"):
        cfg = config(chain, node, cniVersion="1.0.0", **keep_only())
        reply = cluster.run_plugin(node, PLUGIN, verb, cfg)
        assert reply.out is not None and reply.out["code"] == 1, verb


# --- GC ----------------------------------------------------------------------------


@pytest.mark.root
def test_gc_releases_unlisted_attachments_and_keeps_listed_ones(
    any_chain: Network,
) -> None:
    chain = any_chain
    node = chain.bed.node1
    keep, drop = chain.add(node), chain.add(node)
    # An unreadable record of this network: GC reports it in the log and goes on.
    bad = node.state_dir / "ebpf-state" / f"{chain.bed.name}-net" / "junk.eth0.json"
    bad.write_text("{not json")

    reply = cluster.run_plugin(
        node, PLUGIN, "GC", config(chain, node, **keep_only(keep))
    )
    assert (reply.code, reply.out) == (0, None), reply
    assert cluster.endpoints(node) == {keep.ip: cluster.ifindex(node, keep.host_veth)}
    assert ours(node, drop.host_veth) == [] and len(ours(node, keep.host_veth)) == 1
    assert "skipping record" in reply.stderr
    bad.unlink()
    assert len(records(node)) == 1

    keep.node.driver.check(chain.conflist(node), keep.pod, keep.container_id)
    assert tb.ping(keep.pod.name, drop.ip)  # drop still reachable, by the stack
    chain.delete(drop)  # the runtime's own DEL still succeeds afterwards


@pytest.mark.root
def test_gc_removes_the_link_pin_of_a_veth_that_went_without_del(
    chain: Network,
) -> None:
    node = chain.bed.node1
    gone, keep = chain.add(node), chain.add(node)
    links = node.pin_root / "links"
    pin, kept = (
        links / f"if{cluster.ifindex(node, at.host_veth)}-ingress"
        for at in (gone, keep)
    )
    node.run(["ip", "link", "del", gone.host_veth])
    assert pin.exists()  # the kernel detached the link; its pin stays behind

    reply = cluster.run_plugin(
        node, PLUGIN, "GC", config(chain, node, **keep_only(keep))
    )
    assert (reply.code, reply.out) == (0, None), reply
    assert not pin.exists() and kept.exists()
    assert ours(node, keep.host_veth) == [("tcx", "from_pod")]
    keep.node.driver.check(chain.conflist(node), keep.pod, keep.container_id)


@pytest.mark.root
def test_del_and_gc_release_a_pod_whatever_add_only_keys_say(chain: Network) -> None:
    """A typo in attachMode or a bad bandwidth value once failed DEL with 7, so
    libcni never reached vxlan's DEL and the veth and leases stayed."""
    node = chain.bed.node1
    a, b = chain.add(node), chain.add(node)
    chain.overrides["ebpf-redirect.attachMode"] = "xdp"
    chain.overrides["ebpf-redirect.runtimeConfig"] = {"bandwidth": {"egressRate": "1M"}}
    bad = config(chain, node, **keep_only(a))
    reply = cluster.run_plugin(node, PLUGIN, "GC", bad)
    assert (reply.code, reply.out) == (0, None), reply
    assert set(cluster.endpoints(node)) == {a.ip}

    chain.delete(a)  # through libcni: the whole chain's DEL runs
    chain.delete(b)
    assert cluster.endpoints(node) == {} and cluster.host_links(node) == set()
    assert cluster.leases(node) == [] and records(node) == []
    assert sorted(p.name for p in (node.pin_root / "links").glob("if*")) == [
        f"if{cluster.ifindex(node, cluster.vxlan_device(node))}-ingress"
    ]


@pytest.mark.root
def test_add_refuses_a_host_veth_that_another_pod_owns(chain: Network) -> None:
    """A prevResult naming another pod's veth: our later DEL would have taken that
    pod's program with it."""
    node = chain.bed.node1
    at, other = chain.add(node), chain.add(node)
    stolen = json.loads(json.dumps(at.result))
    stolen["interfaces"][0]["name"] = other.host_veth
    cfg = config(chain, node, cniVersion="1.0.0", prevResult=stolen)
    env = {**pod_env(at), "CNI_CONTAINERID": f"{chain.bed.name}-intruder"}
    reply = cluster.run_plugin(node, PLUGIN, "ADD", cfg, **env)
    assert reply.out is not None and reply.out["code"] == 101, reply
    assert f"belongs to {other.container_id}/eth0" in reply.out["msg"]
    assert cluster.run_plugin(node, PLUGIN, "DEL", cfg, **env).code == 0
    assert ours(node, other.host_veth) == [("tcx", "from_pod")]
    other.node.driver.check(chain.conflist(node), other.pod, other.container_id)


@pytest.mark.root
def test_loopback_as_host_interface_is_invalid_config(chain: Network) -> None:
    node = chain.bed.node1
    at = chain.add(node)
    odd = json.loads(json.dumps(at.result))
    odd["interfaces"][0]["name"] = "lo"
    cfg = config(chain, node, cniVersion="1.0.0", prevResult=odd)
    env = {**pod_env(at), "CNI_CONTAINERID": f"{chain.bed.name}-lo"}
    reply = cluster.run_plugin(node, PLUGIN, "ADD", cfg, **env)
    assert reply.out is not None and reply.out["code"] == 7, reply  # was 5
    assert "host interface lo is not a pod's veth" in reply.out["msg"]
    assert ours(node, "lo") == [] and len(records(node)) == 1


@pytest.mark.root
@pytest.mark.parametrize(
    "ips",
    [[{"address": "10.1.0.3"}], [{"address": "10.1.0.3/24", "interface": 9}],
     [{"address": "fd00::3/129"}]],
    ids=["no-prefix", "interface-out-of-range", "prefix-129"],
)  # fmt: skip
def test_recordless_del_with_an_unreadable_prev_result_succeeds(
    chain: Network, ips: list[dict[str, Any]]
) -> None:
    """Nothing to undo can be read from it; DEL must not fail the runtime's chain."""
    node = chain.bed.node1
    at = chain.add(node)
    broken = {**at.result, "ips": ips}
    cfg = config(chain, node, cniVersion="1.0.0", prevResult=broken)
    env = {**pod_env(at), "CNI_CONTAINERID": f"{chain.bed.name}-unknown"}
    reply = cluster.run_plugin(node, PLUGIN, "DEL", cfg, **env)
    assert (reply.code, reply.out) == (0, None), reply
    assert at.ip in cluster.endpoints(node)  # the real pod keeps its entry


@pytest.mark.root
def test_status_says_how_new_pods_would_attach(chain: Network) -> None:
    node = chain.bed.node1
    for mode in ("tcx", "tc"):
        reply = cluster.run_plugin(
            node,
            PLUGIN,
            "STATUS",
            config(chain, node, attachMode=mode, logLevel="info"),
        )
        assert (reply.code, reply.out) == (0, None), reply
        assert f"new pods attach by {mode}" in reply.stderr


@pytest.mark.root
def test_gc_accepts_the_legacy_key_and_leaves_other_networks_alone(
    chain: Network,
) -> None:
    node = chain.bed.node1
    at = chain.add(node)
    legacy = keep_only(at, key="cni.dev/attachments")
    assert (
        cluster.run_plugin(node, PLUGIN, "GC", config(chain, node, **legacy)).code == 0
    )
    assert at.ip in cluster.endpoints(node)

    # Another network on the same pin root and state dir, with nothing to keep.
    other = config(chain, node, name="another-net", **keep_only())
    assert cluster.run_plugin(node, PLUGIN, "GC", other).code == 0
    assert at.ip in cluster.endpoints(node) and len(ours(node, at.host_veth)) == 1
    at.node.driver.check(chain.conflist(node), at.pod, at.container_id)


@pytest.mark.root
def test_gc_without_the_list_is_refused(chain: Network) -> None:
    node = chain.bed.node1
    at = chain.add(node)
    reply = cluster.run_plugin(node, PLUGIN, "GC", config(chain, node))
    assert reply.out is not None and reply.out["code"] == 7, reply
    assert "cni.dev/valid-attachments" in reply.out["msg"]
    assert at.ip in cluster.endpoints(node)


# --- CHECK -------------------------------------------------------------------------


def check_error(chain: Network, at: PodAt) -> tb.CniCommandError:
    with pytest.raises(tb.CniCommandError) as info:
        at.node.driver.check(chain.conflist(at.node), at.pod, at.container_id)
    return info.value


def bpftool_map(node: tb.Node, verb: str, ip: str, *value: str) -> None:
    key = ["key", *ip.split(".")]
    node.run(["bpftool", "map", verb, "pinned", str(Pins(node.pin_root).ep4),
              *key, *value])  # fmt: skip


@pytest.mark.root
def test_check_names_a_missing_or_wrong_entry_and_a_missing_or_displaced_filter(
    tc_chain: Network,
) -> None:
    chain = tc_chain
    node = chain.bed.node1
    at, other = chain.add(node), chain.add(node)
    at.node.driver.check(chain.conflist(node), at.pod, at.container_id)

    bpftool_map(node, "delete", at.ip)
    err = check_error(chain, at)
    assert err.code == 104 and f"endpoint {at.ip} is missing" in err.msg

    # The entry comes back, pointing at the other pod's veth.
    raw = bytes(16)
    value = ["value", "hex", *(f"{b:02x}" for b in raw)]
    bpftool_map(node, "update", at.ip, *value)
    err = check_error(chain, at)
    assert err.code == 104 and f"endpoint {at.ip} is wrong" in err.msg
    bpftool_map(node, "delete", at.ip)

    node.run(["tc", "filter", "delete", "dev", at.host_veth, "ingress", "pref", "1"])
    err = check_error(chain, at)
    assert f"filter on {at.host_veth} ingress at pref 1 is absent" in err.msg
    assert f"endpoint {at.ip} is missing" in err.msg  # every problem, not the first

    node.run(["tc", "filter", "add", "dev", at.host_veth, "ingress", "pref", "1",
              "handle", "1", *FOREIGN])  # fmt: skip
    err = check_error(chain, at)
    assert f"filter on {at.host_veth} ingress is displaced" in err.msg
    other.node.driver.check(chain.conflist(node), other.pod, other.container_id)


@pytest.mark.root
def test_check_names_a_detached_or_missing_tcx_link(chain: Network) -> None:
    node = chain.bed.node1
    at, other = chain.add(node), chain.add(node)
    at.node.driver.check(chain.conflist(node), at.pod, at.container_id)
    pin = node.pin_root / "links" / f"if{cluster.ifindex(node, at.host_veth)}-ingress"

    # An operator (or another tool) detaches our link: the pin stays, the hook is
    # empty.
    node.run(["bpftool", "link", "detach", "pinned", str(pin)])
    assert ours(node, at.host_veth) == []
    err = check_error(chain, at)
    assert err.code == 104 and f"on {at.host_veth} ingress is detached" in err.msg

    pin.unlink()
    err = check_error(chain, at)
    assert err.code == 104 and f"tcx link pin {pin} is missing" in err.msg
    other.node.driver.check(chain.conflist(node), other.pod, other.container_id)
    chain.delete(at)  # DEL copes with the link already gone
    assert not pin.exists()


# --- other users' filters and programs -----------------------------------------


@pytest.mark.root
def test_a_foreign_filter_survives_our_add_check_and_del(any_chain: Network) -> None:
    chain = any_chain
    node = chain.bed.node1
    at = chain.add(node)
    vx = cluster.vxlan_device(node)
    for dev in (at.host_veth, vx):
        # Under tcx we make no qdisc; the other tool brings its own.
        node.run(["tc", "qdisc", "replace", "dev", dev, "clsact"])
        node.run(["tc", "filter", "add", "dev", dev, "ingress", "pref", "50", *FOREIGN])
    cfg = config(chain, node, cniVersion="1.0.0", prevResult=at.result)

    for verb in ("CHECK", "DEL", "DEL", "ADD", "CHECK"):
        reply = cluster.run_plugin(node, PLUGIN, verb, cfg, **pod_env(at))
        assert reply.code == 0, (verb, reply)
        for dev in (at.host_veth, vx):
            assert len(foreign(node, dev)) == 1, (verb, dev)
    second = chain.add(node)  # the overlay filter is checked, not replaced
    assert len(foreign(node, vx)) == 1 and len(ours(node, vx)) == 1
    chain.delete(second)
    chain.delete(at)
    assert len(foreign(node, vx)) == 1


FOREIGN_TCX_SOURCE = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
/* Someone else's tcx program: TCX_NEXT (-1), so the next program runs. */
SEC("tc") int other_tool(struct __sk_buff *skb) { return -1; }
char LICENSE[] SEC("license") = "GPL";
"""
# Links made in the node's netns by the test, through the product's own syscall
# wrapper (Debian's bpftool cannot attach by tcx).
FOREIGN_TCX_ATTACH = (
    "import sys\n"
    "from pathlib import Path\n"
    "from mycni_ebpf_redirect import links, tcx\n"
    "link = links.find(sys.argv[1])\n"
    "tcx.create(Path(sys.argv[2]), link.index, Path(sys.argv[3]))\n"
)


@pytest.mark.root
def test_a_foreign_tcx_program_survives_our_add_check_and_del(
    chain: Network, tmp_path: Path
) -> None:
    node = chain.bed.node1
    at = chain.add(node)
    vx = cluster.vxlan_device(node)
    source = tmp_path / "other_tool.bpf.c"
    source.write_text(FOREIGN_TCX_SOURCE)
    obj = compile_bpf(source, tmp_path / "other_tool.bpf.o")
    theirs = node.pin_root / "other-tool"
    theirs.mkdir()
    node.run(["bpftool", "prog", "load", str(obj), str(theirs / "prog"),
              "type", "classifier"])  # fmt: skip
    for dev in (at.host_veth, vx):
        node.run([sys.executable, "-c", FOREIGN_TCX_ATTACH, dev, str(theirs / "prog"),
                  str(theirs / f"link-{cluster.ifindex(node, dev)}")])  # fmt: skip
        assert cluster.ingress_programs(node, dev)[-1] == ("tcx", "other_tool")
    cfg = config(chain, node, cniVersion="1.0.0", prevResult=at.result)

    for verb in ("CHECK", "DEL", "DEL", "ADD", "CHECK"):
        reply = cluster.run_plugin(node, PLUGIN, verb, cfg, **pod_env(at))
        assert reply.code == 0, (verb, reply)
        for dev in (at.host_veth, vx):
            assert ("tcx", "other_tool") in cluster.ingress_programs(node, dev)
    # Ours went after theirs on the re-ADD: tcx appends, and never displaces.
    assert cluster.ingress_programs(node, at.host_veth) == [
        ("tcx", "other_tool"),
        ("tcx", "from_pod"),
    ]
    chain.delete(at)
    assert cluster.ingress_programs(node, vx) == [
        ("tcx", "from_overlay"),
        ("tcx", "other_tool"),
    ]
    for link in theirs.glob("link-*"):
        link.unlink()
    shutil.rmtree(theirs)


@pytest.mark.root
def test_a_foreign_filter_at_our_slot_is_never_replaced(tc_chain: Network) -> None:
    chain = tc_chain
    node = chain.bed.node1
    at = chain.add(node)
    cfg = config(chain, node, cniVersion="1.0.0", prevResult=at.result)
    assert cluster.run_plugin(node, PLUGIN, "DEL", cfg, **pod_env(at)).code == 0
    node.run(["tc", "filter", "add", "dev", at.host_veth, "ingress", "pref", "1",
              "handle", "1", *FOREIGN])  # fmt: skip

    reply = cluster.run_plugin(node, PLUGIN, "ADD", cfg, **pod_env(at))
    assert reply.out is not None and reply.out["code"] == 101, reply
    assert "is not ours" in reply.out["msg"]
    assert (
        len(foreign(node, at.host_veth)) == 1 and our_filters(node, at.host_veth) == []
    )
    assert at.ip not in cluster.endpoints(node) and records(node) == []

    # DEL leaves it too; a configured priority puts us next to it.
    assert cluster.run_plugin(node, PLUGIN, "DEL", cfg, **pod_env(at)).code == 0
    assert len(foreign(node, at.host_veth)) == 1
    moved = {**cfg, "priority": 7}
    assert cluster.run_plugin(node, PLUGIN, "ADD", moved, **pod_env(at)).code == 0
    (mine,) = our_filters(node, at.host_veth)
    assert mine["pref"] == 7 and len(foreign(node, at.host_veth)) == 1
    assert cluster.run_plugin(node, PLUGIN, "DEL", moved, **pod_env(at)).code == 0


# --- the stack path: fast path off by config, or refused by the kernel ----------


def modes(node: tb.Node) -> list[tuple[str, str]]:
    found = []
    for path in sorted((node.state_dir / "ebpf-state").rglob("*.json")):
        data = json.loads(path.read_text())
        found.append((data["mode"], data["reason"]))
    return found


def assert_connected_without_fast_path(net: Network) -> None:
    n1, n2 = net.bed.nodes
    a, b, c = net.add(n1), net.add(n1), net.add(n2)
    for src, dst in ((a, b), (a, c), (c, a)):
        assert tb.ping(src.pod.name, dst.ip), f"{src.ip} -> {dst.ip}"
    assert tb.tcp_exchange(a.pod.name, c.pod.name, c.ip).reply == "hello mycni"
    for node in (n1, n2):
        assert cluster.endpoints(node) == {}
    for at in (a, b):
        assert ours(n1, at.host_veth) == []


@pytest.mark.root
def test_fast_path_off_by_config_keeps_connectivity_and_is_reported(
    testbed: tb.Testbed,
) -> None:
    net = Network(testbed, "mycni-full", {"ebpf-redirect.fastPath": False})
    try:
        assert_connected_without_fast_path(net)
        node = testbed.node1
        assert modes(node) == [("stack", "fastPath is false in the config")] * 2
        for at in net.pods:  # what the user asked for: CHECK and STATUS pass
            at.node.driver.check(net.conflist(at.node), at.pod, at.container_id)
        assert cluster.run_plugin(node, PLUGIN, "STATUS", config(net, node)).code == 0
    finally:
        net.delete_all()
    assert modes(testbed.node1) == []


@pytest.mark.root
def test_kernel_refusal_falls_back_to_the_stack_and_reports_51(
    testbed: tb.Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The driver passes its environment to the plugins, as runtimes do.
    monkeypatch.setenv("MYCNI_EBPF_UNAVAILABLE", "simulated: no BPF in this kernel")
    net = Network(testbed, "mycni-full")
    try:
        assert_connected_without_fast_path(net)
        node = testbed.node1
        assert [mode for mode, _ in modes(node)] == ["stack", "stack"]
        at = net.pods[0]
        with pytest.raises(tb.CniCommandError) as info:
            node.driver.check(net.conflist(node), at.pod, at.container_id)
        assert info.value.code == 51 and "no BPF in this kernel" in info.value.msg

        reply = cluster.run_plugin(node, PLUGIN, "STATUS", config(net, node))
        assert reply.out is not None and reply.out["code"] == 51, reply
        # The kernel is back (env unset): STATUS still names the pods left behind.
        monkeypatch.delenv("MYCNI_EBPF_UNAVAILABLE")
        reply = cluster.run_plugin(node, PLUGIN, "STATUS", config(net, node))
        assert reply.out is not None and reply.out["code"] == 51, reply
        assert "2 pods" in reply.out["msg"] and "stack path" in reply.out["msg"]
    finally:
        net.delete_all()
    reply = cluster.run_plugin(
        testbed.node1, PLUGIN, "STATUS", config(net, testbed.node1)
    )
    assert reply.code == 0, reply
