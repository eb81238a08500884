"""The datapaths under comparison, each built on a two-node testbed of its own:

- `reference`: bridge + host-local on each node, and between nodes a kernel VXLAN
  device set up by hand the way flannel's vxlan backend does (a /32 VTEP address,
  a route per remote pod subnet via the remote VTEP, a permanent neighbour and FDB
  entry each);
- `mycni`: conflists/mycni-vxlan-only through libcni;
- `mycni-ebpf`: conflists/mycni-full (with ebpf-redirect) through libcni;
- `native` (a limit): pods routed by hand, /32 routes on each node and the remote
  pod subnet routed to the other node's underlay address, no encapsulation;
- `veth` (a limit, same node only): two namespaces joined by one veth pair.

Every namespace is the testbed's; teardown is the testbed's.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests import cluster
from tests import testbed as tb
from tests.bench.traffic import Path
from tests.cluster import Network

# VXLAN over a 1500-byte underlay leaves 1450: the MTU of every overlay pod (ours
# and the reference), and of the veth limit so that it differs only in the path.
OVERLAY_MTU = 1450
UNDERLAY_MTU = 1500
FLANNEL_PORT = 8472  # flannel's default on Linux
FLANNEL_VNI = 1

SAME = "same-node"
ACROSS = "across-nodes"


def reference_conflist() -> dict[str, Any]:
    """bridge + host-local, as a flannel node's CNI config delegates to them."""
    return {
        "cniVersion": "1.0.0",
        "name": "reference",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "mtu": OVERLAY_MTU,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.0.0.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }


@dataclass
class Datapath:
    """One built configuration: the testbed and the paths to measure on it."""

    name: str
    bed: tb.Testbed
    paths: dict[str, Path] = field(default_factory=dict)
    mtu: int = OVERLAY_MTU
    network: Network | None = None

    @property
    def node_namespaces(self) -> list[str]:
        return [node.name for node in self.bed.nodes]


def build_all(names: list[str], stack: contextlib.ExitStack) -> list[Datapath]:
    """Build each named datapath on a fresh testbed registered on `stack`."""
    builders: dict[str, Callable[[tb.Testbed], Datapath]] = {
        "reference": build_reference,
        "mycni": lambda bed: build_mycni(bed, "mycni", "mycni-vxlan-only"),
        "mycni-ebpf": lambda bed: build_mycni(bed, "mycni-ebpf", "mycni-full"),
        "native": build_native,
        "veth": build_veth,
    }
    built = []
    for name in names:
        bed = stack.enter_context(tb.Testbed())
        datapath = builders[name](bed)
        if datapath.network is not None:
            stack.callback(datapath.network.delete_all)
        built.append(datapath)
    return built


def pod_paths(
    client: str, same: tuple[str, str], across: tuple[str, str]
) -> dict[str, Path]:
    return {
        SAME: Path(client, same[0], same[1]),
        ACROSS: Path(client, across[0], across[1]),
    }


def build_mycni(bed: tb.Testbed, name: str, conflist: str) -> Datapath:
    net = Network(bed, conflist)
    client, same, other = net.add(bed.node1), net.add(bed.node1), net.add(bed.node2)
    paths = pod_paths(
        client.pod.name, (same.pod.name, same.ip), (other.pod.name, other.ip)
    )
    return Datapath(name, bed, paths, network=net)


def build_reference(bed: tb.Testbed) -> Datapath:
    net = Network(bed, reference_conflist())  # type: ignore[arg-type]
    client, same, other = net.add(bed.node1), net.add(bed.node1), net.add(bed.node2)
    for node in bed.nodes:
        add_flannel_device(bed, node)
    paths = pod_paths(
        client.pod.name, (same.pod.name, same.ip), (other.pod.name, other.ip)
    )
    return Datapath("reference", bed, paths, network=net)


def vtep_mac(address: ipaddress.IPv4Address) -> str:
    return "02:fa:" + ":".join(f"{byte:02x}" for byte in address.packed)


def add_flannel_device(bed: tb.Testbed, node: tb.Node) -> None:
    """flannel.1 on node, with a route, neighbour and FDB entry per other node."""
    dev = f"flannel.{FLANNEL_VNI}"
    ip = ["ip", "-n", node.name]
    tb.run(
        [
            *ip,
            "link",
            "add",
            dev,
            "address",
            vtep_mac(node.address.ip),
            "mtu",
            str(OVERLAY_MTU),
            "type",
            "vxlan",
            "id",
            str(FLANNEL_VNI),
            "local",
            str(node.address.ip),
            "dev",
            node.underlay,
            "dstport",
            str(FLANNEL_PORT),
            "nolearning",
        ]
    )
    own = cluster.pod_subnet(bed, node)
    tb.run([*ip, "addr", "add", f"{own.network_address}/32", "dev", dev])
    tb.run([*ip, "link", "set", dev, "up"])
    for other in bed.nodes:
        if other is node:
            continue
        subnet = cluster.pod_subnet(bed, other)
        vtep = str(subnet.network_address)
        mac = vtep_mac(other.address.ip)
        tb.run([*ip, "route", "add", str(subnet), "via", vtep, "dev", dev, "onlink"])
        tb.run(
            [*ip, "neigh", "add", vtep, "lladdr", mac, "dev", dev, "nud", "permanent"]
        )
        tb.run(
            [
                "bridge",
                "-n",
                node.name,
                "fdb",
                "append",
                mac,
                "dev",
                dev,
                "dst",
                str(other.address.ip),
            ]
        )


def add_routed_pod(bed: tb.Testbed, node: tb.Node, host: int) -> tuple[str, str]:
    """A pod attached to node by a veth with /32 routes both ways (ptp-style);
    returns its namespace and address."""
    subnet = cluster.pod_subnet(bed, node)
    gateway, address = str(subnet[1]), str(subnet[host])
    pod = bed.add_pod(f"r{node.index}")
    host_veth = f"rt{host}"
    tb.run(
        [
            "ip",
            "-n",
            node.name,
            "link",
            "add",
            host_veth,
            "mtu",
            str(UNDERLAY_MTU),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.name,
        ]
    )
    tb.run(["ip", "-n", node.name, "addr", "add", f"{gateway}/32", "dev", host_veth])
    tb.run(["ip", "-n", node.name, "link", "set", host_veth, "up"])
    tb.run(["ip", "-n", node.name, "route", "add", f"{address}/32", "dev", host_veth])
    tb.run(["ip", "-n", pod.name, "addr", "add", f"{address}/32", "dev", "eth0"])
    tb.run(["ip", "-n", pod.name, "link", "set", "eth0", "up"])
    tb.run(["ip", "-n", pod.name, "route", "add", gateway, "dev", "eth0"])
    tb.run(["ip", "-n", pod.name, "route", "add", "default", "via", gateway])
    return pod.name, address


def build_native(bed: tb.Testbed) -> Datapath:
    client, _ = add_routed_pod(bed, bed.node1, 2)
    same = add_routed_pod(bed, bed.node1, 3)
    other = add_routed_pod(bed, bed.node2, 2)
    for node, peer in ((bed.node1, bed.node2), (bed.node2, bed.node1)):
        subnet = cluster.pod_subnet(bed, peer)
        tb.run(
            [
                "ip",
                "-n",
                node.name,
                "route",
                "add",
                str(subnet),
                "via",
                str(peer.address.ip),
                "dev",
                node.underlay,
            ]
        )
    return Datapath("native", bed, pod_paths(client, same, other), UNDERLAY_MTU)


def build_veth(bed: tb.Testbed) -> Datapath:
    a, b = bed.add_pod("va"), bed.add_pod("vb")
    tb.run(
        [
            "ip",
            "-n",
            a.name,
            "link",
            "add",
            "eth0",
            "mtu",
            str(OVERLAY_MTU),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            b.name,
        ]
    )
    for pod, address in ((a, "10.250.0.1/30"), (b, "10.250.0.2/30")):
        tb.run(["ip", "-n", pod.name, "addr", "add", address, "dev", "eth0"])
        tb.run(["ip", "-n", pod.name, "link", "set", "eth0", "up"])
    return Datapath("veth", bed, {SAME: Path(a.name, b.name, "10.250.0.2")})
