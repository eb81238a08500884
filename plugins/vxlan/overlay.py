"""The node's VXLAN device and its static view of the other nodes (route, neigh, FDB).

There is no control plane: every node derives each VTEP's MAC from its underlay address,
so the config's node list is all a node needs to reach the others. The underlay is
IPv4 only; the pods' traffic inside the overlay is IPv4, IPv6 or both.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from libcni.errors import CheckFailed, ConflictingState, InvalidConfig
from libcni.types import IPAddress, IPConfig, IPNetwork
from mycni_vxlan import netlink
from mycni_vxlan.config import MIN_MTU_V6, VXLAN_OVERHEAD_V4, Node, VxlanConf

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger(__name__)


def vtep_mac(underlay: ipaddress.IPv4Address) -> str:
    """02:6d:<underlay IPv4>: locally administered, unique per underlay address."""
    return ":".join(f"{b:02x}" for b in (0x02, 0x6D, *underlay.packed))


def vtep_addresses(node: Node) -> dict[int, IPAddress]:
    """The node's VTEP address per IP version: the network address of its first pod
    subnet of that version (IPAMs never hand it out). Both sit on the VXLAN device,
    as a /32 and a /128, and are the next hop of the other nodes' routes."""
    found: dict[int, IPAddress] = {}
    for subnet in node.pod_subnets:
        found.setdefault(subnet.version, subnet.network_address)
    return found


def family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


@dataclass(frozen=True)
class Underlay:
    index: int
    name: str
    address: ipaddress.IPv4Address
    mtu: int


@dataclass(frozen=True)
class Overlay:
    index: int
    name: str
    mtu: int
    local: Node | None
    created: bool = False  # by this ADD: its undo removes the device again


def find_underlay(ipr: IPRoute, conf: VxlanConf) -> Underlay:
    if conf.underlay_device:
        index = netlink.link_index(ipr, conf.underlay_device)
        if index is None:
            raise InvalidConfig(
                f"underlayDevice: {conf.underlay_device} does not exist on this node"
            )
    else:
        index = _default_route_device(ipr)
    link = ipr.get_links(index)[0]
    name = str(link.get("ifname"))
    address = conf.local_address or _first_ipv4(ipr, index)
    if address is None:
        raise InvalidConfig(
            f"localAddress: not set and underlay device {name} has no IPv4 address"
        )
    return Underlay(
        index=index, name=name, address=address, mtu=int(link.get_attr("IFLA_MTU"))
    )


def _default_route_device(ipr: IPRoute) -> int:
    for route in ipr.get_routes(family=socket.AF_INET, table=netlink.RT_TABLE_MAIN):
        if route["dst_len"] == 0 and route.get_attr("RTA_OIF") is not None:
            return int(route.get_attr("RTA_OIF"))
    raise InvalidConfig(
        "underlayDevice: not set, and the node has no IPv4 default route to infer it"
    )


def _first_ipv4(ipr: IPRoute, index: int) -> ipaddress.IPv4Address | None:
    for addr in ipr.get_addr(family=socket.AF_INET, index=index):
        if addr["scope"] == 0:
            return ipaddress.IPv4Address(addr.get_attr("IFA_ADDRESS"))
    return None


def check_subnets(ipr: IPRoute, conf: VxlanConf, underlay: Underlay) -> None:
    """Pod subnets routed into the overlay must not swallow the underlay itself (its
    IPv6 networks, link-local included, as much as its IPv4 ones)."""
    local_nets = [
        ipaddress.ip_network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", False)
        for a in ipr.get_addr(index=underlay.index)
        if a["family"] in (socket.AF_INET, socket.AF_INET6)
    ]
    for node in conf.nodes:
        for subnet in node.pod_subnets:
            for net in local_nets:
                if subnet.version == net.version and subnet.overlaps(net):
                    raise InvalidConfig(
                        f"{node.path_of(subnet)}: {subnet} overlaps the underlay "
                        f"{net} of {underlay.name}"
                    )


def overlay_mtu(conf: VxlanConf, underlay: Underlay, ipv6: bool = False) -> int:
    """The MTU of the VXLAN device and of every pod veth. An inner IPv6 packet pays
    the same 50 bytes as an inner IPv4 one (its own header is inside the MTU).
    `ipv6`: a pod gets an IPv6 address, even if no node lists an IPv6 subnet."""
    ceiling = underlay.mtu - VXLAN_OVERHEAD_V4
    if conf.mtu is not None and conf.mtu > ceiling:
        raise InvalidConfig(
            f"mtu: {conf.mtu} does not fit underlay {underlay.name} (mtu {underlay.mtu}"
            f" leaves {ceiling} after {VXLAN_OVERHEAD_V4} bytes of VXLAN header)"
        )
    mtu = ceiling if conf.mtu is None else conf.mtu
    if (ipv6 or conf.has_ipv6) and mtu < MIN_MTU_V6:
        # Linux turns IPv6 off on such a link: the IPv6 addresses on the device
        # and the pod's veth would fail later with a bare EINVAL.
        why = (
            f"{conf.mtu} is"
            if conf.mtu is not None
            else f"underlay {underlay.name} (mtu {underlay.mtu}) leaves {mtu} after "
            f"{VXLAN_OVERHEAD_V4} bytes of VXLAN header,"
        )
        raise InvalidConfig(f"mtu: {why} below the {MIN_MTU_V6} that IPv6 pods need")
    return int(mtu)


def local_node(conf: VxlanConf, underlay: Underlay) -> Node | None:
    return next((n for n in conf.nodes if n.underlay == underlay.address), None)


def ensure_device(
    ipr: IPRoute, conf: VxlanConf, underlay: Underlay, ipv6: bool = False
) -> Overlay:
    """Create the VXLAN device once; on later ADDs check it matches the config."""
    mtu = overlay_mtu(conf, underlay, ipv6)
    me = local_node(conf, underlay)
    created = netlink.tolerate(
        lambda: ipr.link(
            "add",
            ifname=conf.device,
            kind="vxlan",
            vxlan_id=conf.vni,
            vxlan_port=conf.port,
            vxlan_local=str(underlay.address),
            vxlan_link=underlay.index,
            vxlan_learning=0,
            mtu=mtu,
            address=vtep_mac(underlay.address),
        ),
        errno.EEXIST,
    )
    index = netlink.link_index(ipr, conf.device)
    if index is None:
        raise ConflictingState(
            f"failed to find vxlan device {conf.device} after creating"
        )
    try:
        if created:
            log.debug(
                "created vxlan device %s vni %d mtu %d", conf.device, conf.vni, mtu
            )
        else:
            _verify(ipr, index, conf, underlay, mtu)
        ipr.link("set", index=index, state="up")
        for vtep in vtep_addresses(me).values() if me else ():
            _ensure_vtep_address(ipr, index, vtep)
    except BaseException:
        if created:
            netlink.delete_link_quietly(ipr, conf.device)
        raise
    if me is None:
        log.warning(
            "no entry in nodes for this node's underlay address %s: the node itself "
            "reaches other nodes' pods with its underlay address as source",
            underlay.address,
        )
    return Overlay(index=index, name=conf.device, mtu=mtu, local=me, created=created)


def _ensure_vtep_address(ipr: IPRoute, index: int, vtep: IPAddress) -> None:
    # The other nodes know this address as a permanent neighbour, so IPv6 skips
    # duplicate address detection; and no /128 prefix route: the local one suffices.
    flags = 0
    if vtep.version == 6:
        flags = netlink.IFA_F_NODAD | netlink.IFA_F_NOPREFIXROUTE
    netlink.tolerate(
        lambda: ipr.addr(
            "add",
            family=family(vtep.version),
            index=index,
            address=str(vtep),
            prefixlen=vtep.max_prefixlen,
            flags=flags,
        ),
        errno.EEXIST,
    )


def _verify(
    ipr: IPRoute, index: int, conf: VxlanConf, underlay: Underlay, mtu: int
) -> None:
    link = ipr.get_links(index)[0]
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else None
    if kind != "vxlan":
        raise ConflictingState(
            f"cannot use {conf.device} as vxlan device: it is a {kind or 'plain'} link"
        )
    data: dict[str, Any] = dict(info.get_attr("IFLA_INFO_DATA")["attrs"])
    expected = {
        "IFLA_VXLAN_ID": ("vni", conf.vni),
        "IFLA_VXLAN_PORT": ("port", conf.port),
        "IFLA_VXLAN_LOCAL": ("local address", str(underlay.address)),
        "IFLA_VXLAN_LINK": ("underlay device index", underlay.index),
    }
    for attr, (label, want) in expected.items():
        have = data.get(attr)
        if have != want:
            raise ConflictingState(
                f"failed to use vxlan device {conf.device}: its {label} is {have}, "
                f"the config needs {want}"
            )
    have_mtu = int(link.get_attr("IFLA_MTU"))
    if have_mtu != mtu:
        # The device is shared: changing it under the pods already attached would
        # leave their veths with a larger MTU than the path they send into.
        raise ConflictingState(
            f"failed to use vxlan device {conf.device}: its mtu is {have_mtu}, this "
            f"config needs {mtu} (underlay {underlay.name} mtu {underlay.mtu}); every "
            "config of a network must agree"
        )


def ensure_peers(ipr: IPRoute, conf: VxlanConf, overlay: Overlay) -> None:
    """Program route, neighbour and FDB entry for every other node in the config."""
    # One dump of the main tables for all nodes: a dump per subnet made an ADD on a
    # large cluster cost nodes x routes.
    owners = _route_owners(ipr)
    for node in conf.nodes:
        if node is overlay.local:
            continue
        vteps = vtep_addresses(node)
        mac = vtep_mac(node.underlay)
        for vtep in vteps.values():
            ipr.neigh(
                "replace",
                family=family(vtep.version),
                dst=str(vtep),
                lladdr=mac,
                ifindex=overlay.index,
                state=netlink.NUD_PERMANENT,
            )
        ipr.fdb(
            "replace",
            ifindex=overlay.index,
            lladdr=mac,
            dst=str(node.underlay),
            state=netlink.NUD_PERMANENT,
            flags=netlink.NTF_SELF,
        )
        for subnet in node.pod_subnets:
            _refuse_foreign_route(owners, subnet, overlay)
            # The next hop lies outside every prefix of the device: onlink, which
            # IPv6 routes accept too since Linux 4.16.
            ipr.route(
                "replace",
                family=family(subnet.version),
                dst=str(subnet),
                gateway=str(vteps[subnet.version]),
                oif=overlay.index,
                flags=netlink.RTNH_F_ONLINK,
                proto=netlink.RTPROT_STATIC,
            )
        log.debug(
            "overlay peer %s: vteps %s mac %s",
            node.underlay,
            ", ".join(map(str, vteps.values())),
            mac,
        )


def _route_owners(ipr: IPRoute) -> dict[IPNetwork, int]:
    """Destination -> output link, over the IPv4 and IPv6 main tables."""
    owners: dict[IPNetwork, int] = {}
    for version in (4, 6):
        for route in ipr.get_routes(
            family=family(version), table=netlink.RT_TABLE_MAIN
        ):
            oif = route.get_attr("RTA_OIF")
            if oif is not None:
                owners[_destination(route, version)] = int(oif)
    return owners


def _destination(route: Any, version: int) -> IPNetwork:
    dst = route.get_attr("RTA_DST") or ("0.0.0.0" if version == 4 else "::")
    return ipaddress.ip_network(f"{dst}/{route['dst_len']}")


def _refuse_foreign_route(
    owners: dict[IPNetwork, int], subnet: IPNetwork, overlay: Overlay
) -> None:
    """Replace our own route only: one through another device belongs to someone
    else (another network's overlay, the operator) and stays."""
    oif = owners.get(subnet)
    if oif is not None and oif != overlay.index:
        raise ConflictingState(
            f"failed to route pod subnet {subnet} into {overlay.name}: a route "
            f"through link {oif} already exists"
        )


def check_peers(ipr: IPRoute, conf: VxlanConf, overlay: Overlay) -> None:
    """CHECK: this node's VTEP addresses and, for every other node, the route,
    neighbour and FDB entry that ensure_peers programs."""
    have = _addresses(ipr, overlay.index)
    for vtep in vtep_addresses(overlay.local).values() if overlay.local else ():
        if vtep not in have:
            raise CheckFailed(
                f"failed to check vxlan device {overlay.name}: its VTEP address "
                f"{vtep}/{vtep.max_prefixlen} is missing"
            )
    routes = _routes_via(ipr, overlay.index)
    neighbours = _permanent_neighbours(ipr, overlay.index)
    fdb = _fdb(ipr, overlay.index)
    for node in conf.nodes:
        if node is overlay.local:
            continue
        vteps = vtep_addresses(node)
        mac = vtep_mac(node.underlay)
        if str(node.underlay) not in fdb.get(mac, set()):
            raise CheckFailed(
                f"failed to check fdb entry {mac} dst {node.underlay} on "
                f"{overlay.name}: it is missing"
            )
        for vtep in vteps.values():
            if neighbours.get(vtep) != mac:
                raise CheckFailed(
                    f"failed to check neighbour {vtep} lladdr {mac} on "
                    f"{overlay.name}: it is {neighbours.get(vtep) or 'missing'}"
                )
        for subnet in node.pod_subnets:
            if routes.get(subnet) != vteps[subnet.version]:
                raise CheckFailed(
                    f"failed to check route {subnet} via {vteps[subnet.version]} "
                    f"dev {overlay.name}: it is missing"
                )


def _addresses(ipr: IPRoute, index: int) -> set[IPAddress]:
    return {
        ipaddress.ip_address(a.get_attr("IFA_ADDRESS"))
        for a in ipr.get_addr(index=index)
        if a["family"] in (socket.AF_INET, socket.AF_INET6)
    }


def _routes_via(ipr: IPRoute, index: int) -> dict[IPNetwork, IPAddress | None]:
    """Destination -> gateway of the main tables' routes through one link."""
    found: dict[IPNetwork, IPAddress | None] = {}
    for version in (4, 6):
        for route in ipr.get_routes(
            family=family(version), table=netlink.RT_TABLE_MAIN
        ):
            if route.get_attr("RTA_OIF") != index:
                continue
            gateway = route.get_attr("RTA_GATEWAY")
            found[_destination(route, version)] = (
                ipaddress.ip_address(gateway) if gateway else None
            )
    return found


def _permanent_neighbours(ipr: IPRoute, index: int) -> dict[IPAddress, str]:
    found: dict[IPAddress, str] = {}
    for version in (4, 6):
        for neigh in ipr.get_neighbours(family=family(version), ifindex=index):
            dst, mac = neigh.get_attr("NDA_DST"), neigh.get_attr("NDA_LLADDR")
            if dst and mac and neigh["state"] & netlink.NUD_PERMANENT:
                found[ipaddress.ip_address(dst)] = str(mac).lower()
    return found


def _fdb(ipr: IPRoute, index: int) -> dict[str, set[str]]:
    """MAC -> remote underlay addresses of the VXLAN device's forwarding database."""
    found: dict[str, set[str]] = {}
    for entry in ipr.get_neighbours(family=socket.AF_BRIDGE, ifindex=index):
        mac, dst = entry.get_attr("NDA_LLADDR"), entry.get_attr("NDA_DST")
        if mac and dst:
            found.setdefault(str(mac).lower(), set()).add(str(dst))
    return found


def check_lease(conf: VxlanConf, me: Node | None, ips: tuple[IPConfig, ...]) -> None:
    """An address outside this node's pod subnets would be routed to another node
    by every other node: a duplicate waiting to happen."""
    if me is None:
        return
    for ip in ips:
        mine = [s for s in me.pod_subnets if s.version == ip.address.version]
        if mine and not any(ip.address.ip in s for s in mine):
            raise InvalidConfig(
                f"ipam: {ip.address.ip} is outside this node's pod subnet "
                f"{', '.join(map(str, mine))} (nodes entry {me.underlay})"
            )
