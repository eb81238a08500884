"""mycni networks on a testbed: conflists whose node list and pod ranges match it."""

from __future__ import annotations

import ipaddress
import itertools
import json
import sqlite3
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import testbed as tb


def pod_subnet(bed: tb.Testbed, node: tb.Node) -> ipaddress.IPv4Network:
    """10.<testbed octet>.<node index>.0/24: unique per testbed, inside its netns."""
    octet = bed.subnet.network_address.packed[2]
    return ipaddress.IPv4Network(f"10.{octet}.{node.index}.0/24")


def pod_subnet6(bed: tb.Testbed, node: tb.Node) -> ipaddress.IPv6Network:
    """fd6d:0:<testbed octet>:<node index>::/64, the IPv6 twin of pod_subnet."""
    octet = bed.subnet.network_address.packed[2]
    return ipaddress.IPv6Network(f"fd6d:0:{octet}:{node.index}::/64")


def node_list(bed: tb.Testbed, *, dual_stack: bool = False) -> list[dict[str, Any]]:
    """Every node of the testbed; with dual_stack, `podSubnets` holds both families."""
    if dual_stack:
        return [
            {
                "name": node.name,
                "underlayAddress": str(node.address.ip),
                "podSubnets": [str(pod_subnet(bed, node)), str(pod_subnet6(bed, node))],
            }
            for node in bed.nodes
        ]
    return [
        {
            "name": node.name,
            "underlayAddress": str(node.address.ip),
            "podSubnet": str(pod_subnet(bed, node)),
        }
        for node in bed.nodes
    ]


def ranges(
    bed: tb.Testbed, node: tb.Node, *, dual_stack: bool = False
) -> list[list[dict[str, str]]]:
    """host-local style range sets of the node's pod subnet(s), gateway first."""
    subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        pod_subnet(bed, node)
    ]
    if dual_stack:
        subnets.append(pod_subnet6(bed, node))
    return [[{"subnet": str(s), "gateway": str(s[1])}] for s in subnets]


def render(
    bed: tb.Testbed,
    node: tb.Node,
    source: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    filename: str = "net.conflist",
    dual_stack: bool = False,
) -> Path:
    """Write `source` (a conflist of conflists/) for `node` of `bed`; return its path.

    The vxlan plugin gets the testbed's node list and a vni of its own; the IPAM (of
    vxlan or of any plugin that has one) hands out addresses of this node's pod subnet
    (with dual_stack, of its IPv4 and its IPv6 pod subnet: one range set each).
    """
    conflist = node.render_conflist(source)
    conflist["name"] = f"{bed.name}-net"
    for plugin in conflist.get("plugins", []):
        if plugin.get("type") == "vxlan":
            plugin["nodes"] = node_list(bed, dual_stack=dual_stack)
            plugin["vni"] = 100 + bed.subnet.network_address.packed[2]
            plugin["stateDir"] = str(node.state_dir / "vxlan-state")
        if plugin.get("type") == "ebpf-redirect":
            plugin["stateDir"] = str(node.state_dir / "ebpf-state")
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and "ranges" in ipam:
            ipam["ranges"] = ranges(bed, node, dual_stack=dual_stack)
    conflist = tb.render_conflist(conflist, overrides)
    path = node.state_dir / filename
    path.write_text(json.dumps(conflist, indent=2))
    return path


def leases(node: tb.Node) -> list[tuple[Any, ...]]:
    """Every lease mycni-ipam holds in this node's data directory."""
    found: list[tuple[Any, ...]] = []
    for db in node.ipam_dir.rglob("*.sqlite3"):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            found += conn.execute("SELECT * FROM leases").fetchall()
    return found


def host_links(node: tb.Node) -> set[str]:
    """Host-side pod veths on a node (our default prefix `mc`)."""
    return {name for name in tb.list_links(node.name) if name.startswith("mc")}


def node_routes(node: tb.Node) -> list[str]:
    return node.run(["ip", "-4", "route", "show"]).stdout.splitlines()


def node_routes6(node: tb.Node) -> list[str]:
    return node.run(["ip", "-6", "route", "show"]).stdout.splitlines()


def stats(node: tb.Node) -> dict[str, int]:
    """The fast path's counters on a node, summed over CPUs, by name."""
    from mycni_ebpf_redirect import maps, pins

    counters = maps.read_stats(pins.Pins(node.pin_root).stats)
    return {stat.name: value for stat, value in counters.items()}


def endpoints(node: tb.Node) -> dict[str, int]:
    """Pod address -> host veth ifindex, as the node's endpoint map holds them."""
    from mycni_ebpf_redirect import maps, pins

    ep4 = pins.Pins(node.pin_root).ep4
    if not ep4.exists():
        return {}
    return {str(ip): ep.ifindex for ip, ep in maps.dump_endpoints(ep4).items()}


def endpoints6(node: tb.Node) -> dict[str, int]:
    """Pod IPv6 address -> host veth ifindex, as the node's mycni_ep6 holds them."""
    from mycni_ebpf_redirect import maps, pins

    ep6 = pins.Pins(node.pin_root).ep6
    if not ep6.exists():
        return {}
    return {str(ip): ep.ifindex for ip, ep in maps.dump_endpoints(ep6).items()}


def tc_filters(node: tb.Node, dev: str) -> list[dict[str, Any]]:
    out = node.run(["tc", "-j", "filter", "show", "dev", dev, "ingress"], check=False)
    return list(json.loads(out.stdout or "[]")) if out.returncode == 0 else []


# Ids of the programs on a device's tcx ingress (BPF_PROG_QUERY; bpftool 7.1 and tc
# 6.1 cannot list tcx), asked in the node's netns.
_TCX_QUERY = (
    "import sys\n"
    "from mycni_ebpf_redirect import links, tcx\n"
    "link = links.find(sys.argv[1])\n"
    "print(*(tcx.attached_ids(link.index) if link else []))\n"
)


def vxlan_device(node: tb.Node) -> str:
    """The name of the node's one VXLAN device (`mycni.<vni>`)."""
    (name,) = [n for n in tb.list_links(node.name) if n.startswith("mycni.")]
    return name


def ingress_programs(node: tb.Node, dev: str) -> list[tuple[str, str]]:
    """(how, program name) of every eBPF program on dev's ingress, tcx links first
    (they run first) then tc filters by pref: ("tcx", "from_pod"), ("tc", ...)."""
    return [(how, name) for how, name, _ in ingress_program_ids(node, dev)]


def ingress_program_ids(node: tb.Node, dev: str) -> list[tuple[str, str, int]]:
    """ingress_programs with each program's id."""
    found = []
    out = node.run([sys.executable, "-c", _TCX_QUERY, dev]).stdout.split()
    for prog_id in out:
        info = json.loads(
            node.run(["bpftool", "-j", "prog", "show", "id", prog_id]).stdout
        )
        found.append(("tcx", str(info.get("name", "")), int(prog_id)))
    for f in tc_filters(node, dev):
        options = f.get("options", {})
        name = options.get("bpf_name")
        if name:  # "from_pod:[*fsobj]" for a program tc took from a pin
            found.append(("tc", str(name).split(":")[0], int(options["prog"]["id"])))
    return found


def link_stats(node: tb.Node, dev: str) -> dict[str, int]:
    """rx/tx packet counters of a link on the node."""
    info = node.run(["ip", "-j", "-s", "link", "show", "dev", dev]).stdout
    stats64 = json.loads(info)[0]["stats64"]
    return {"rx": stats64["rx"]["packets"], "tx": stats64["tx"]["packets"]}


def plugin_config(
    conflist: Path, plugin_type: str, cni_version: str = "1.1.0", **extra: Any
) -> dict[str, Any]:
    """One plugin's network config out of a conflist, as a runtime would build it."""
    data = json.loads(conflist.read_text())
    plugin = next(p for p in data["plugins"] if p["type"] == plugin_type)
    return {"cniVersion": cni_version, "name": data["name"], **plugin, **extra}


@dataclass(frozen=True)
class Reply:
    code: int
    out: dict[str, Any] | None
    stderr: str


def run_plugin(
    node: tb.Node,
    plugin_type: str,
    command: str,
    config: Mapping[str, Any],
    **env: str,
) -> Reply:
    """Exec a built plugin directly on a node, the way a 1.1 runtime would: for the
    verbs Debian's libcni lacks (STATUS, GC). stdout must be one JSON or nothing."""
    environ = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": command,
        "CNI_PATH": ":".join(str(p) for p in tb.DEFAULT_CNI_PATH),
        **env,
    }
    proc = node.run(
        [str(tb.BUILD_BIN / plugin_type)],
        input=json.dumps(config),
        env=environ,
        check=False,
    )
    out = json.loads(proc.stdout) if proc.stdout.strip() else None
    return Reply(proc.returncode, out, proc.stderr)


@dataclass
class PodAt:
    pod: tb.Pod
    node: tb.Node
    container_id: str
    result: dict[str, Any]

    @property
    def ip(self) -> str:
        return str(self.result["ips"][0]["address"].split("/")[0])

    @property
    def ip6(self) -> str:
        """The pod's first IPv6 address."""
        return next(
            str(ip["address"].split("/")[0])
            for ip in self.result["ips"]
            if ":" in ip["address"]
        )

    @property
    def host_veth(self) -> str:
        return str(self.result["interfaces"][0]["name"])


@dataclass
class Network:
    """One conflist rendered for each node of a testbed, and the pods attached to it."""

    bed: tb.Testbed
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)
    pods: list[PodAt] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    dual_stack: bool = False  # IPv4 and IPv6 pod subnets on every node

    def conflist(self, node: tb.Node) -> Path:
        return render(
            self.bed, node, self.source, self.overrides, dual_stack=self.dual_stack
        )

    def add(self, node: tb.Node, ifname: str = "eth0") -> PodAt:
        pod = self.bed.add_pod(f"p{node.index}")
        cid = f"{self.bed.name}-c{next(self._ids)}"
        result = node.driver.add(self.conflist(node), pod, cid, ifname=ifname)
        at = PodAt(pod, node, cid, result)
        self.pods.append(at)
        return at

    def delete(self, at: PodAt) -> None:
        at.node.driver.delete(self.conflist(at.node), at.pod, at.container_id)
        self.pods.remove(at)

    def delete_all(self) -> None:
        for at in list(self.pods):
            self.delete(at)


def ifindex(node: tb.Node, dev: str) -> int:
    info = tb.link_info(node.name, dev)
    assert info is not None, f"{dev} is missing on {node.name}"
    return int(info["ifindex"])
