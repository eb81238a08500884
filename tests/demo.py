"""`make demo`: two nodes with two pods each on the full chain, a connectivity matrix
that says which path every flow took, then everything removed again.

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
    """Ping and a TCP exchange; which path they took, from the programs' counters."""
    before = counted(nodes)
    ok = tb.ping(src.pod.name, dst.ip, count=PINGS)
    try:
        ok = ok and tb.tcp_exchange(src.pod.name, dst.ns, dst.ip).reply == "hello mycni"
    except tb.CommandFailed:
        ok = False
    after = counted(nodes)
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


def counted(nodes: tuple[tb.Node, ...]) -> dict[str, int]:
    """The redirect counters of all nodes, summed."""
    names = ("REDIRECTED", "REDIRECTED_NEIGH", "REDIRECTED_OVERLAY_IN")
    return {name: sum(cluster.stats(n)[name] for n in nodes) for name in names}


def paint(text: str, ok: bool) -> str:
    if not sys.stdout.isatty():
        return text
    return f"\033[{32 if ok else 31}m{text}\033[0m"


def show_matrix(bed: tb.Testbed, pods: list[PodAt]) -> int:
    def short(p: PodAt) -> str:
        return f"pod{pods.index(p)}@node{p.node.index}"

    targets = [Target(short(p), p.pod.name, p.ip, p.node, True) for p in pods]
    targets += [
        Target(f"node{n.index}", n.name, str(n.address.ip), n, False) for n in bed.nodes
    ]
    for p in pods:
        print(
            f"  {short(p):<14} {p.ip:<15} netns {p.pod.name}, host veth {p.host_veth}"
        )
    print(
        "\nfrom \\ to".ljust(WIDTH + 1) + "".join(t.label.ljust(WIDTH) for t in targets)
    )
    failures = 0
    for src in pods:
        row = short(src).ljust(WIDTH)
        for dst in targets:
            if dst.ns == src.pod.name:
                row += "-".ljust(WIDTH)
                continue
            ok, path = probe(src, dst, bed.nodes)
            failures += not ok
            row += paint(f"{'ok' if ok else 'FAIL'} {path}".ljust(WIDTH), ok)
        print(row)
    print(
        "\nredirect:   bpf_redirect_peer from the sender's host veth into the peer pod"
        "\nebpf vxlan: bpf_redirect_neigh into the VXLAN device on the way out,"
        "\n            bpf_redirect_peer from it into the pod on the way in"
        "\nvxlan:      routed by the node into the VXLAN overlay"
        "\nunderlay:   routed by the node to the other node's address, unencapsulated"
        "\nstack:      through the node's IP stack"
    )
    return failures


def main() -> int:
    with tb.Testbed() as bed:
        print(f"mycni demo, testbed {bed.name}: vxlan -> mycni-ipam -> ebpf-redirect")
        net = Network(bed, "mycni-full")
        try:
            pods = [net.add(node) for node in bed.nodes for _ in range(2)]
            failures = show_matrix(bed, pods)
        finally:
            net.delete_all()
    verdict = "all flows ok" if not failures else f"{failures} flows FAILED"
    print(f"\n{verdict}; pods deleted through libcni, testbed removed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
