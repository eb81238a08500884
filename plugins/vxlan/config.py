"""The vxlan plugin's network config, validated, with the JSON path in every error."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libcni import fields
from libcni.errors import InvalidConfig, shown
from libcni.types import IPNetwork, parse_address, parse_network

DEFAULT_PORT = 4789  # IANA's VXLAN port (RFC 7348)
DEFAULT_VNI = 1
MAX_VNI = (1 << 24) - 1
# Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) bytes.
VXLAN_OVERHEAD_V4 = 50
MIN_MTU = 576  # the IPv4 minimum datagram size every host must accept (RFC 791)
# IPv6's minimum link MTU (RFC 8200 section 5); Linux turns IPv6 off on a smaller link.
MIN_MTU_V6 = 1280
DEFAULT_STATE_DIR = Path("/var/lib/cni/mycni-vxlan")


@dataclass(frozen=True)
class Node:
    """One member of the cluster: where its VTEP is and which pod subnet lives there."""

    underlay: ipaddress.IPv4Address
    pod_subnets: tuple[IPNetwork, ...]
    name: str = ""
    # The JSON path of each pod subnet, for errors found after parsing.
    paths: tuple[str, ...] = ()

    def path_of(self, subnet: IPNetwork) -> str:
        for have, path in zip(self.pod_subnets, self.paths, strict=False):
            if have == subnet:
                return path
        return "podSubnet"


@dataclass(frozen=True)
class TeardownConf:
    """What DEL and GC need: read leniently, so an edited node list or a device
    setting that no longer validates never blocks removing pods."""

    network: str
    ipam_type: str
    host_veth_prefix: str
    state_dir: Path

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> TeardownConf:
        ipam = config.get("ipam")
        ipam_type = ipam.get("type") if isinstance(ipam, dict) else None
        if not isinstance(ipam_type, str) or not ipam_type:
            raise InvalidConfig(
                f"ipam.type: expected a plugin name, got {shown(ipam_type)}"
            )
        return cls(
            network=str(config["name"]),
            ipam_type=ipam_type,
            host_veth_prefix=_prefix(config),
            state_dir=fields.absolute_path(config, "stateDir", DEFAULT_STATE_DIR),
        )


@dataclass(frozen=True)
class VxlanConf:
    network: str
    ipam_type: str
    vni: int
    port: int
    device: str
    underlay_device: str
    local_address: ipaddress.IPv4Address | None
    mtu: int | None
    nodes: tuple[Node, ...]
    host_veth_prefix: str
    state_dir: Path

    @property
    def has_ipv6(self) -> bool:
        """Some node has an IPv6 pod subnet: the overlay carries IPv6."""
        return any(s.version == 6 for n in self.nodes for s in n.pod_subnets)

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> VxlanConf:
        ipam = config.get("ipam")
        if not isinstance(ipam, dict):
            raise InvalidConfig(f"ipam: expected an object, got {shown(ipam)}")
        ipam_type = ipam.get("type")
        if not isinstance(ipam_type, str) or not ipam_type:
            raise InvalidConfig(
                f"ipam.type: expected a plugin name, got {shown(ipam_type)}"
            )
        vni = fields.integer(config, "vni", DEFAULT_VNI, 1, MAX_VNI)
        device = fields.string(config, "vxlanDevice", f"mycni.{vni}")
        fields.interface_name(device, "vxlanDevice")
        underlay_device = fields.string(config, "underlayDevice", "")
        if underlay_device:
            fields.interface_name(underlay_device, "underlayDevice")
        local = None
        if config.get("localAddress") is not None:
            addr = parse_address(config["localAddress"], "localAddress")
            if not isinstance(addr, ipaddress.IPv4Address):
                raise InvalidConfig(
                    f"localAddress: {addr} is IPv6; the underlay is IPv4 only for now"
                )
            local = addr
        prefix = _prefix(config)
        mtu = None
        if config.get("mtu") is not None:
            mtu = fields.integer(config, "mtu", 0, MIN_MTU, 65535)
        nodes = _nodes(config.get("nodes", []))
        if mtu is not None and mtu < MIN_MTU_V6:
            _refuse_small_ipv6_mtu(nodes, mtu)
        return cls(
            network=str(config["name"]),
            ipam_type=ipam_type,
            vni=vni,
            port=fields.integer(config, "port", DEFAULT_PORT, 1, 65535),
            device=device,
            underlay_device=underlay_device,
            local_address=local,
            mtu=mtu,
            nodes=nodes,
            host_veth_prefix=prefix,
            state_dir=fields.absolute_path(config, "stateDir", DEFAULT_STATE_DIR),
        )


def _prefix(config: dict[str, Any]) -> str:
    prefix = fields.string(config, "hostVethPrefix", "mc")
    if not 1 <= len(prefix) <= 4 or not (prefix.isascii() and prefix.isalnum()):
        raise InvalidConfig(
            f"hostVethPrefix: {shown(prefix)} must be 1 to 4 ASCII letters or digits"
        )
    return prefix


def _nodes(raw: Any) -> tuple[Node, ...]:
    if not isinstance(raw, list):
        raise InvalidConfig(f"nodes: expected a list, got {shown(raw)}")
    nodes: list[Node] = []
    seen: dict[ipaddress.IPv4Address, int] = {}
    names: dict[str, int] = {}
    for i, entry in enumerate(raw):
        where = f"nodes[{i}]"
        if not isinstance(entry, dict):
            raise InvalidConfig(f"{where}: expected an object, got {shown(entry)}")
        underlay = parse_address(
            entry.get("underlayAddress"), f"{where}.underlayAddress"
        )
        if not isinstance(underlay, ipaddress.IPv4Address):
            raise InvalidConfig(
                f"{where}.underlayAddress: {underlay}: the underlay is IPv4 only"
            )
        if underlay in seen:
            raise InvalidConfig(
                f"{where}.underlayAddress: {underlay} repeats nodes[{seen[underlay]}]"
            )
        seen[underlay] = i
        raw_subnets = _subnet_entries(entry, where)
        parsed = tuple(_subnet(text, path) for path, text in raw_subnets)
        name = entry.get("name", "")
        if not isinstance(name, str):
            raise InvalidConfig(f"{where}.name: expected a string, got {shown(name)}")
        if name and name in names:
            raise InvalidConfig(
                f"{where}.name: {shown(name)} repeats nodes[{names[name]}]"
            )
        names[name] = i
        paths = tuple(path for path, _ in raw_subnets)
        nodes.append(
            Node(underlay=underlay, pod_subnets=parsed, name=name, paths=paths)
        )
    _reject_overlaps(nodes)
    for node in nodes:
        for subnet in node.pod_subnets:
            if subnet.prefixlen == 0:
                raise InvalidConfig(f"{node.path_of(subnet)}: {subnet} is everything")
            for other in nodes:
                if other.underlay in subnet:
                    raise InvalidConfig(
                        f"{node.path_of(subnet)}: {subnet} contains the underlay "
                        f"address {other.underlay}"
                    )
    return tuple(nodes)


def _subnet_entries(entry: dict[str, Any], where: str) -> list[tuple[str, Any]]:
    """(JSON path, value) of each pod subnet: `podSubnet` first, then `podSubnets`."""
    found: list[tuple[str, Any]] = []
    if "podSubnet" in entry:
        found.append((f"{where}.podSubnet", entry["podSubnet"]))
    listed = entry.get("podSubnets", [])
    if not isinstance(listed, list):
        raise InvalidConfig(f"{where}.podSubnets: expected a list, got {shown(listed)}")
    found += [(f"{where}.podSubnets[{j}]", text) for j, text in enumerate(listed)]
    if not found:
        raise InvalidConfig(f"{where}.podSubnet: missing")
    return found


def _subnet(text: Any, where: str) -> IPNetwork:
    subnet = parse_network(text, where)
    if ipaddress.ip_interface(text).ip != subnet.network_address:
        raise InvalidConfig(
            f"{where}: {shown(text)} has host bits set; did you mean {subnet}?"
        )
    return subnet


def _reject_overlaps(nodes: list[Node]) -> None:
    owners: list[tuple[IPNetwork, int]] = []
    for i, node in enumerate(nodes):
        for subnet in node.pod_subnets:
            for other, j in owners:
                if subnet.version == other.version and subnet.overlaps(other):
                    raise InvalidConfig(
                        f"{node.path_of(subnet)}: {subnet} overlaps {other} of "
                        f"nodes[{j}]"
                    )
            owners.append((subnet, i))


def _refuse_small_ipv6_mtu(nodes: tuple[Node, ...], mtu: int) -> None:
    for node in nodes:
        for subnet in node.pod_subnets:
            if subnet.version == 6:
                raise InvalidConfig(
                    f"mtu: {mtu} is below {MIN_MTU_V6}, the least IPv6 needs, and "
                    f"{node.path_of(subnet)} is the IPv6 subnet {subnet}"
                )
