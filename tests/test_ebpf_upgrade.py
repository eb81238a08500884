"""Pins left by an older layout are migrated by the next ADD, with pods still up.

The older layout is the real one of the release before versioning (progs/ and maps/
right under pinRoot), made by moving a live node's pins there; and a map of the
current name with another value size, as a changed struct endpoint would leave.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mycni_ebpf_redirect import maps, program
from mycni_ebpf_redirect.pins import LAYOUT_VERSION, Pins
from tests import cluster
from tests import testbed as tb
from tests.cluster import Network, PodAt
from tests.ebpf_fixtures import (  # noqa: F401  (fixtures)
    BPF_SRC,
    ScratchNode,
    compile_bpf,
    scratch_node,
)
from tests.test_ebpf_attach import plugin, pods, setup_pod  # noqa: F401

CURRENT = f"v{LAYOUT_VERSION}"


def prog_id(node: tb.Node, dev: str) -> int:
    (ours,) = [
        i for _, name, i in cluster.ingress_program_ids(node, dev) if "from_" in name
    ]
    return ours


def vxlan_device(node: tb.Node) -> str:
    return cluster.vxlan_device(node)


def pin_root_entries(root: Path) -> list[str]:
    """Layouts under a pin root: not links/ (tcx links, unversioned), nor
    maps.debug and progs.debug (the kernel's bpf_preload iterators at a mount
    root)."""
    return sorted(
        p.name for p in root.iterdir() if "." not in p.name and p.name != "links"
    )


def all_reach(ats: list[PodAt]) -> None:
    for src in ats:
        for dst in ats:
            if src is not dst:
                assert tb.ping(src.pod.name, dst.ip), f"{src.ip} -> {dst.ip}"


@pytest.mark.root
def test_pre_versioning_layout_is_migrated_and_old_pods_stay_reachable(
    any_chain: Network,
) -> None:
    chain = any_chain
    n1, n2 = chain.bed.nodes
    a, b, c = chain.add(n1), chain.add(n1), chain.add(n2)
    root = n1.pin_root
    for part in ("progs", "maps"):
        (root / CURRENT / part).rename(root / part)
    (root / CURRENT).rmdir()
    old = {at.ip: prog_id(n1, at.host_veth) for at in (a, b)}
    old_overlay = prog_id(n1, vxlan_device(n1))
    all_reach([a, b, c])  # the old programs run on, on their (unpinned) maps

    d = chain.add(n1)  # the first ADD after the "upgrade"
    assert pin_root_entries(root) == [CURRENT]
    pins = Pins(root)
    new = program.pinned_program(pins.program).id
    assert new not in old.values()
    assert {prog_id(n1, at.host_veth) for at in (a, b, d)} == {new}
    overlay = prog_id(n1, vxlan_device(n1))
    assert overlay == program.pinned_program(pins.overlay_program).id
    assert overlay != old_overlay
    assert set(cluster.endpoints(n1)) == {a.ip, b.ip, d.ip}
    assert maps.dump_overlays(pins.ovl)

    all_reach([a, b, c, d])
    stats = cluster.stats(n1)  # the new maps carry the traffic now
    assert stats["REDIRECTED"] > 0 and stats["REDIRECTED_OVERLAY_IN"] > 0
    for at in (a, b, d):
        at.node.driver.check(chain.conflist(n1), at.pod, at.container_id)


def test_a_misshapen_map_at_the_current_path_is_replaced(
    scratch_node: ScratchNode,  # noqa: F811
    pods: list[str],  # noqa: F811
) -> None:
    """As if struct endpoint had grown: the pinned mycni_ep4 has 20-byte values."""
    node = scratch_node
    pins = Pins(node.pin_root)
    pins.maps.mkdir(parents=True)
    subprocess.run(
        ["bpftool", "map", "create", str(pins.ep4), "type", "hash", "key", "4",
         "value", "20", "entries", "16", "name", "mycni_ep4"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    objects = node.workdir / "objects"
    objects.mkdir()
    for name in ("from_pod", "from_overlay"):
        compile_bpf(BPF_SRC / f"{name}.bpf.c", objects / f"{name}.bpf.o")
    base = {
        "cniVersion": "1.0.0", "name": "net1", "type": "ebpf-redirect",
        "pinRoot": str(node.pin_root), "bpfObjectDir": str(objects),
        "stateDir": str(node.state_dir), "vxlanDevice": "",
    }  # fmt: skip
    prev = setup_pod(node, pods[0], 0)
    added = plugin(node, "ADD", {**base, "prevResult": prev}, "c0", pods[0])
    assert added.returncode == 0, added.stdout + added.stderr
    assert "has key/value sizes (4, 20), want (4, 16)" in added.stderr
    assert pin_root_entries(node.pin_root) == [CURRENT]
    assert program.map_shape(pins.ep4) == (4, 16)
    assert [str(ip) for ip in maps.dump_endpoints(pins.ep4)] == ["10.1.0.2"]
    record = json.loads((node.state_dir / "net1" / "c0.eth0.json").read_text())
    assert record["mode"] == "fast"
    deleted = plugin(node, "DEL", {**base, "prevResult": prev}, "c0", pods[0])
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr


@pytest.mark.root
def test_layout_2_node_is_migrated_and_its_pods_keep_both_families(
    testbed: tb.Testbed,
) -> None:
    """A live node of layout v2, as the release before IPv6 left it: pins under v2/
    with mycni_ep4, mycni_stats and mycni_ovl but no mycni_ep6, and records that
    list IPv4 addresses only. It is made from a live node of the current layout by
    moving its pins to v2/, unpinning mycni_ep6 and dropping the IPv6 addresses
    from the records; the programs on the veths are the current ones (the v2
    sources are not in the tree), which the migration replaces like any of ours."""
    net = Network(testbed, "mycni-full", dual_stack=True)
    try:
        migrate_layout_2(net)
    finally:
        net.delete_all()


def migrate_layout_2(net: Network) -> None:
    n1, n2 = net.bed.nodes
    a, b, c = net.add(n1), net.add(n1), net.add(n2)
    root = n1.pin_root
    (root / CURRENT).rename(root / "v2")
    (root / "v2" / "maps" / "mycni_ep6").unlink()
    for path in (n1.state_dir / "ebpf-state").rglob("*.json"):
        record = json.loads(path.read_text())
        record["ips"] = [ip for ip in record["ips"] if ":" not in ip]
        path.write_text(json.dumps(record))
    old = {prog_id(n1, at.host_veth) for at in (a, b)}
    all_reach([a, b, c])

    d = net.add(n1)  # the first ADD after the upgrade
    assert pin_root_entries(root) == [CURRENT]
    new = program.pinned_program(Pins(root).program).id
    assert new not in old
    assert {prog_id(n1, at.host_veth) for at in (a, b, d)} == {new}
    assert set(cluster.endpoints(n1)) == {a.ip, b.ip, d.ip}
    # The v2 records do not know a's and b's IPv6 addresses: only pods added from
    # now on have an mycni_ep6 entry; traffic to the others takes the stack.
    assert set(cluster.endpoints6(n1)) == {d.ip6}

    all_reach([a, b, c, d])
    for src, dst in ((a, d), (d, a), (b, d), (a, b)):
        assert tb.ping(src.pod.name, dst.ip6), f"{src.ip6} -> {dst.ip6}"
    stats = cluster.stats(n1)
    assert stats["REDIRECTED_V6"] > 0 and stats["PASSED_V6"] > 0
    for at in (a, b, d):
        at.node.driver.check(net.conflist(n1), at.pod, at.container_id)
