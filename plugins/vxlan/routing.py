"""Addresses and routes on both ends of a pod's veth: the node routes every pod packet.

The pod's address carries its subnet's prefix but no on-link subnet route, so even
same-subnet traffic goes to the gateway, which lives on the host end of every pod veth.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING

from libcni.errors import ConflictingState, InvalidConfig
from libcni.types import IPAddress, IPConfig, Route
from mycni_vxlan import netlink
from mycni_vxlan.veth import VethPair

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger(__name__)

DEFAULT = {
    4: ipaddress.ip_network("0.0.0.0/0"),
    6: ipaddress.ip_network("::/0"),
}
FORWARDING = {
    4: "/proc/sys/net/ipv4/ip_forward",
    6: "/proc/sys/net/ipv6/conf/all/forwarding",
}
ACCEPT_DAD = "/proc/sys/net/ipv6/conf/{}/accept_dad"


def gateway_of(ip: IPConfig) -> IPAddress:
    """The IPAM's gateway, or the subnet's first address when the IPAM names none."""
    if ip.gateway is not None:
        return ip.gateway
    return ip.address.network.network_address + 1


def pod_routes(
    ips: tuple[IPConfig, ...], extra: tuple[Route, ...]
) -> tuple[Route, ...]:
    """A default route per family, plus the IPAM's routes (default ones folded in)."""
    routes: list[Route] = []
    for ip in ips:
        default = Route(dst=DEFAULT[ip.address.version], gw=gateway_of(ip))
        if default not in routes:
            routes.append(default)
    for route in extra:
        family_gw = next(
            (gateway_of(ip) for ip in ips if ip.address.version == route.dst.version),
            None,
        )
        if family_gw is None:
            continue
        if route.gw is not None and route.gw != family_gw:
            raise InvalidConfig(
                f"ipam.routes: {route.dst} via {route.gw}: a pod's only next hop is "
                f"its gateway {family_gw}"
            )
        wanted = Route(dst=route.dst, gw=family_gw)
        if route.dst.prefixlen == 0 or wanted in routes:
            continue
        routes.append(wanted)
    return tuple(routes)


def configure_pod(
    pod: IPRoute, pair: VethPair, ips: tuple[IPConfig, ...], routes: tuple[Route, ...]
) -> None:
    index = pair.pod_index
    for ip in ips:
        flags = netlink.IFA_F_NOPREFIXROUTE
        if ip.address.version == 6:
            flags |= netlink.IFA_F_NODAD
        pod.addr(
            "add",
            index=index,
            address=str(ip.address.ip),
            prefixlen=ip.address.network.prefixlen,
            flags=flags,
        )
    pod.link("set", index=index, state="up")
    for gw in {gateway_of(ip) for ip in ips}:
        _add_or_append(
            pod, dst=f"{gw}/{gw.max_prefixlen}", oif=index, scope=netlink.RT_SCOPE_LINK
        )
    for route in routes:
        _add_or_append(pod, dst=str(route.dst), gateway=str(route.gw), oif=index)
    log.debug("pod %s: addresses %s, routes %s", pair.pod_name, ips, routes)


def _add_or_append(ipr: IPRoute, **route: object) -> None:
    """A second interface of the same network in one pod must not take over the
    first one's routes: its own go behind them and take over if the first leaves."""
    if not netlink.tolerate(lambda: ipr.route("add", **route), errno.EEXIST):
        ipr.route("append", **route)


def configure_host(node: IPRoute, pair: VethPair, ips: tuple[IPConfig, ...]) -> None:
    """Gateway address on the host end (like every pod veth), and a route to the pod."""
    index = pair.host_index
    if any(ip.address.version == 6 for ip in ips):
        _skip_dad(pair.host_name)
    node.link("set", index=index, state="up")
    for ip in ips:
        gw = gateway_of(ip)
        netlink.tolerate(
            lambda gw=gw: node.addr(
                "add",
                index=index,
                address=str(gw),
                prefixlen=gw.max_prefixlen,
                flags=netlink.IFA_F_NODAD if gw.version == 6 else 0,
            ),
            errno.EEXIST,
        )
        _route_to_pod(node, pair, ip.address.ip)
    log.debug("host %s: gateway and pod routes for %s", pair.host_name, ips)


def _route_to_pod(node: IPRoute, pair: VethPair, ip: IPAddress) -> None:
    """The node's /32 (/128) route to the pod. A route to that address through
    another link means another pod holds it (an IPAM that does not know the other's
    leases, e.g. after swapping host-local for mycni-ipam): taking it over would cut
    that pod off, so ADD fails instead. A route left by a deleted veth went with
    its link."""
    dst = f"{ip}/{ip.max_prefixlen}"
    added = netlink.tolerate(
        lambda: node.route(
            "add",
            dst=dst,
            oif=pair.host_index,
            scope=netlink.RT_SCOPE_LINK,
            proto=netlink.RTPROT_STATIC,
        ),
        errno.EEXIST,
    )
    if added:
        return
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    holders = {
        route.get_attr("RTA_OIF")
        for route in node.get_routes(family=family, table=netlink.RT_TABLE_MAIN)
        if route["dst_len"] == ip.max_prefixlen and route.get_attr("RTA_DST") == str(ip)
    }
    others = sorted(str(h) for h in holders if h != pair.host_index)
    if others:
        names = [netlink.link_name(node, int(h)) or f"ifindex {h}" for h in others]
        raise ConflictingState(
            f"failed to route pod address {ip} to {pair.host_name}: it is routed to "
            f"{', '.join(names)} already; the IPAM handed out an address another pod "
            "holds"
        )


def _skip_dad(host: str) -> None:
    """No duplicate address detection on the host end, set before it comes up.

    Linux sends a neighbour solicitation for a forwarded packet only from a
    link-local address that passed DAD (ndisc_send_ns), so a new pod would be
    unreachable from outside its node for 1-2 s. Nothing else is on this link to
    collide with: its other end is the pod's, born with it.
    """
    with open(ACCEPT_DAD.format(host), "w") as f:
        f.write("0")
    log.debug("host veth %s: IPv6 duplicate address detection off", host)


def ensure_forwarding(families: set[int]) -> None:
    """The node routes pod traffic: turn forwarding on in the namespace we run in."""
    for family in sorted(families):
        path = FORWARDING[family]
        with open(path) as f:
            if f.read().strip() == "1":
                continue
        if family == 6:
            log.warning(
                "enabling IPv6 forwarding on this node: interfaces with accept_ra=1 "
                "stop taking router advertisements (set accept_ra=2 to keep them)"
            )
        with open(path, "w") as f:
            f.write("1")
        log.debug("enabled forwarding: %s", path)
