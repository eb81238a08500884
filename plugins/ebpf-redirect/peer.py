"""Whether prevResult's host interface is the veth whose other end is the pod's
interface, and whether the node routes the pod's addresses to it: only then do
those addresses belong behind that veth in the endpoint maps."""

from __future__ import annotations

import logging
import os

from libcni import netns
from libcni.errors import InvalidConfig, IOFailure
from libcni.types import IPAddress

from . import links, rtnetlink

log = logging.getLogger(__name__)


def require_pod_end(host: links.Link, netns_path: str, ifname: str, where: str) -> None:
    """Refuse a host link whose peer is not ifname inside the netns at netns_path.

    Without this, a prevResult naming the node's uplink (also a veth, to another
    namespace) or another pod's veth would put from_pod on that link and map the
    pod's addresses to it, sending same-node traffic for the pod elsewhere.

    rtnetlink rather than ethtool's peer_ifindex statistic: IFLA_LINK_NETNSID names
    the peer's namespace, so one query of the host end identifies the peer exactly,
    while an ifindex alone (ifindexes are per namespace and small) can match by
    coincidence even when checked from both ends. Both cost about the same: a few
    syscalls and no pyroute2 import.
    """
    fd = netns.open_netns(netns_path)
    try:
        # Ask about the host end first: that allocates the peer namespace's id
        # when it had none, so nsid_of() below sees it if it is the pod's.
        peer = rtnetlink.link_peer(host.index)
        pod_nsid = rtnetlink.nsid_of(fd)
        with netns.entered(fd):
            pod = links.find(ifname)
    finally:
        os.close(fd)

    why = mismatch(peer, pod_nsid, pod.index if pod else None, ifname)
    if why:
        raise InvalidConfig(
            f"{where}: {host.name} is not the veth whose peer is {ifname} in "
            f"CNI_NETNS {netns_path}: {why}"
        )
    log.debug("%s is the peer of %s in %s", host.name, ifname, netns_path)


def mismatch(
    peer: rtnetlink.LinkPeer, pod_nsid: int | None, pod_index: int | None, ifname: str
) -> str:
    """Why the link described by peer is not ifname's other end, or ""."""
    if peer.peer_nsid is None:
        return f"its peer (ifindex {peer.peer_index}) is in the node's own namespace"
    if peer.peer_nsid < 0:  # NETNSA_NSID_NOT_ASSIGNED: the kernel could not name it
        return f"the kernel gave its peer's namespace no id (ifindex {peer.peer_index})"
    if pod_index is None:
        return f"CNI_NETNS has no {ifname}"
    if peer.peer_nsid != pod_nsid:
        return f"its peer (ifindex {peer.peer_index}) is in another namespace"
    if peer.peer_index != pod_index:
        return f"its peer is ifindex {peer.peer_index}, {ifname} is {pod_index}"
    return ""


def require_routed_to(host: links.Link, ips: tuple[IPAddress, ...]) -> None:
    """Refuse a pod address the node does not route to the pod's veth.

    The plugin before us routes each pod address to its veth (vxlan: a /32 or
    /128). An address routed elsewhere belongs to someone else: another pod, a pod
    of another node, the gateway or the node itself (a local route). In the
    endpoint map it would take that owner's traffic, and this pod's DEL would then
    remove the owner's entry.
    """
    for ip in ips:
        try:
            route = rtnetlink.route_to(ip)
        except IOFailure as exc:
            raise InvalidConfig(
                f"prevResult.ips: {ip} is not routed to {host.name}: {exc.msg}"
            ) from exc
        if route.kind == rtnetlink.RTN_UNICAST and route.oif == host.index:
            continue
        if route.kind == rtnetlink.RTN_LOCAL:
            where = "an address of the node itself"
        elif route.oif is not None:
            where = f"routed via {links.name_of(route.oif) or route.oif}"
        else:
            where = f"routed by a route of type {route.kind}"
        raise InvalidConfig(
            f"prevResult.ips: {ip} is {where}, not to {host.name}; it belongs to "
            "someone else"
        )
