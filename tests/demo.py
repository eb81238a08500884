"""`make demo`: two nodes with two dual-stack pods each on the full chain, a
connectivity matrix per address family that says which path every flow took, then
everything removed again.

Run as root from the repository after `make build driver`: python -m tests.demo
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from tests import cluster
from tests import testbed as tb
from tests.cluster import Network, PodAt

PINGS = 3
WIDTH = 17


@dataclass(frozen=True)
class Target:
    label: str
    ns: str
    ip: str
    node: tb.Node
    is_pod: bool


def probe(src: PodAt, dst: Target, nodes: tuple[tb.Node, ...]) -> tuple[bool, str]:
    """Ping and a TCP exchange; which path they took, from the programs' counters
    of dst's address family."""
    v6 = ":" in dst.ip
    before = counted(nodes, v6)
    ok = tb.ping(src.pod.name, dst.ip, count=PINGS)
    try:
        ok = ok and tb.tcp_exchange(src.pod.name, dst.ns, dst.ip).reply == "hello mycni"
    except tb.CommandFailed:
        ok = False
    after = counted(nodes, v6)
    moved = {name: after[name] - before[name] for name in after}
    if moved["REDIRECTED"] >= 2 * PINGS:
        return ok, "redirect"
    # Each request and each reply leaves its node by redirect_neigh and enters the
    # other by redirect_peer.
    if min(moved["REDIRECTED_NEIGH"], moved["REDIRECTED_OVERLAY_IN"]) >= 2 * PINGS:
        return ok, "ebpf vxlan"
    if dst.node == src.node:
        return ok, "stack"
    return ok, "vxlan" if dst.is_pod else "underlay"


def counted(nodes: tuple[tb.Node, ...], v6: bool) -> dict[str, int]:
    """The redirect counters of all nodes, summed, for one family: the *_V6 ones
    for IPv6, the rest of each path counter (which counts both) for IPv4."""
    names = ("REDIRECTED", "REDIRECTED_NEIGH", "REDIRECTED_OVERLAY_IN")
    total = dict.fromkeys(names, 0)
    for node in nodes:
        stats = cluster.stats(node)
        for name in names:
            v6_share = stats[f"{name}_V6"]
            total[name] += v6_share if v6 else stats[name] - v6_share
    return total


def paint(text: str, ok: bool) -> str:
    if not sys.stdout.isatty():
        return text
    return f"\033[{32 if ok else 31}m{text}\033[0m"


def short(pods: list[PodAt], p: PodAt) -> str:
    return f"pod{pods.index(p)}@node{p.node.index}"


def show_matrix(bed: tb.Testbed, pods: list[PodAt], v6: bool) -> int:
    """One family's matrix. The nodes have no IPv6 underlay address, so the IPv6
    matrix has pods only."""
    if v6:
        targets = [
            Target(short(pods, p), p.pod.name, p.ip6, p.node, True) for p in pods
        ]
    else:
        targets = [Target(short(pods, p), p.pod.name, p.ip, p.node, True) for p in pods]
        targets += [
            Target(f"node{n.index}", n.name, str(n.address.ip), n, False)
            for n in bed.nodes
        ]
    print(
        f"\n{'IPv6' if v6 else 'IPv4'} from \\ to".ljust(WIDTH + 1)
        + "".join(t.label.ljust(WIDTH) for t in targets)
    )
    failures = 0
    for src in pods:
        row = short(pods, src).ljust(WIDTH)
        for dst in targets:
            if dst.ns == src.pod.name:
                row += "-".ljust(WIDTH)
                continue
            ok, path = probe(src, dst, bed.nodes)
            failures += not ok
            row += paint(f"{'ok' if ok else 'FAIL'} {path}".ljust(WIDTH), ok)
        print(row)
    return failures


def show_legend() -> None:
    print(
        "\nredirect:   bpf_redirect_peer from the sender's host veth into the peer pod"
        "\nebpf vxlan: bpf_redirect_neigh into the VXLAN device on the way out,"
        "\n            bpf_redirect_peer from it into the pod on the way in"
        "\nvxlan:      routed by the node into the VXLAN overlay"
        "\nunderlay:   routed by the node to the other node's address, unencapsulated"
        "\nstack:      through the node's IP stack"
    )


def main() -> int:
    with tb.Testbed() as bed:
        print(
            f"mycni demo, testbed {bed.name}: vxlan -> mycni-ipam -> ebpf-redirect, "
            "dual-stack pods"
        )
        net = Network(bed, "mycni-full", dual_stack=True)
        try:
            pods = [net.add(node) for node in bed.nodes for _ in range(2)]
            for p in pods:
                print(f"  {short(pods, p):<14} {p.ip:<15} {p.ip6:<22} "
                      f"netns {p.pod.name}, host veth {p.host_veth}")  # fmt: skip
            failures = show_matrix(bed, pods, v6=False)
            failures += show_matrix(bed, pods, v6=True)
            show_legend()
        finally:
            net.delete_all()
    verdict = "all flows ok" if not failures else f"{failures} flows FAILED"
    print(f"\n{verdict}; pods deleted through libcni, testbed removed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
