"""ADD, DEL and CHECK of the vxlan plugin."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from contextlib import ExitStack
from typing import TYPE_CHECKING

from libcni import delegate, netns
from libcni.errors import CheckFailed, InvalidConfig
from libcni.skel import Plugin, Request
from libcni.types import Interface, IPConfig, Result, Route, prev_result
from mycni_vxlan import netlink, overlay, routing, veth
from mycni_vxlan.config import VxlanConf

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger(__name__)


def cmd_add(req: Request) -> Result:
    conf = VxlanConf.from_json(req.config)
    host = host_veth_name(conf, req)

    with ExitStack() as resources:
        pod_fd = netns.open_netns(req.netns)
        resources.callback(os.close, pod_fd)
        node = resources.enter_context(netlink.session())
        pod = resources.enter_context(netlink.session(pod_fd))
        if netlink.link_index(pod, req.ifname) is not None:
            raise InvalidConfig(
                f"CNI_IFNAME: interface {req.ifname} already exists in {req.netns}"
            )

        underlay = overlay.find_underlay(node, conf)
        vx = overlay.ensure_device(node, conf, underlay)
        overlay.ensure_peers(node, conf, vx)

        with ExitStack() as undo:
            lease = delegate.add(conf.ipam_type, req)
            undo.callback(delegate.delete_quietly, conf.ipam_type, req)
            if not lease.ips:
                raise InvalidConfig(f"ipam.type: {conf.ipam_type} returned no address")

            pair = veth.create_pair(node, pod, pod_fd, host, req.ifname, vx.mtu)
            undo.callback(netlink.delete_link_quietly, node, host)

            ips = tuple(
                IPConfig(ip.address, routing.gateway_of(ip), 1) for ip in lease.ips
            )
            routes = routing.pod_routes(ips, lease.routes)
            routing.ensure_forwarding({ip.address.version for ip in ips})
            routing.configure_pod(pod, pair, ips, routes)
            routing.configure_host(node, pair, ips)
            undo.pop_all()

    return Result(
        cni_version=req.cni_version,
        interfaces=(
            Interface(name=pair.host_name, mac=pair.host_mac, mtu=vx.mtu),
            Interface(name=req.ifname, mac=pair.pod_mac, sandbox=req.netns, mtu=vx.mtu),
        ),
        ips=ips,
        routes=routes,
        dns=lease.dns,
    )


def cmd_del(req: Request) -> None:
    """Remove the veth (its routes and gateway address go with it), release the IP."""
    conf = VxlanConf.from_json(req.config)
    host = host_veth_name(conf, req)

    with netlink.session() as node:
        if netlink.delete_link_quietly(node, host):
            log.debug("deleted host veth %s", host)
        else:
            log.debug("host veth %s already gone", host)

    delegate.delete(conf.ipam_type, req)


def cmd_check(req: Request) -> None:
    conf = VxlanConf.from_json(req.config)
    prev = prev_result(req.config)
    if prev is None:
        raise InvalidConfig("prevResult: CHECK needs the result of ADD")
    host = host_veth_name(conf, req)
    pod_index = next(
        (
            i
            for i, itf in enumerate(prev.interfaces)
            if itf.name == req.ifname and itf.sandbox
        ),
        None,
    )
    if pod_index is None:
        raise CheckFailed(f"prevResult: no interface {req.ifname} inside a sandbox")
    ips = prev.ips_on(pod_index)

    with ExitStack() as resources:
        pod_fd = netns.open_netns(req.netns)
        resources.callback(os.close, pod_fd)
        node = resources.enter_context(netlink.session())
        pod = resources.enter_context(netlink.session(pod_fd))

        check_pod(pod, req.ifname, ips, prev.routes)
        check_host(node, host, ips)
        check_overlay(node, conf)

    delegate.check(conf.ipam_type, req)


def check_pod(
    pod: IPRoute, ifname: str, ips: tuple[IPConfig, ...], routes: tuple[Route, ...]
) -> None:
    index = netlink.link_index(pod, ifname)
    if index is None:
        raise CheckFailed(f"failed to check pod interface {ifname}: it does not exist")
    have = {
        ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
        for a in pod.get_addr(index=index)
    }
    for ip in ips:
        if ip.address not in have:
            raise CheckFailed(
                f"failed to check pod interface {ifname}: {ip.address} is missing"
            )
    installed = {
        (str(_route_dst(r)), r.get_attr("RTA_GATEWAY"))
        for family in (socket.AF_INET, socket.AF_INET6)
        for r in pod.get_routes(family=family, table=netlink.RT_TABLE_MAIN)
        if r.get_attr("RTA_OIF") == index
    }
    for route in routes:
        key = (str(route.dst), str(route.gw) if route.gw else None)
        if key not in installed:
            raise CheckFailed(
                f"failed to check pod routes: {route.dst} via {route.gw} is missing"
            )


def _route_dst(route: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    family = route["family"]  # type: ignore[index]
    dst = route.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")  # type: ignore[attr-defined]
    return ipaddress.ip_network(f"{dst}/{route['dst_len']}")  # type: ignore[index]


def check_host(node: IPRoute, host: str, ips: tuple[IPConfig, ...]) -> None:
    index = netlink.link_index(node, host)
    if index is None:
        raise CheckFailed(f"failed to check host veth {host}: it does not exist")
    for ip in ips:
        family = socket.AF_INET if ip.address.version == 4 else socket.AF_INET6
        found = [
            r
            for r in node.get_routes(family=family, table=netlink.RT_TABLE_MAIN)
            if r.get_attr("RTA_OIF") == index
            and r.get_attr("RTA_DST") == str(ip.address.ip)
            and r["dst_len"] == ip.address.max_prefixlen
        ]
        if not found:
            raise CheckFailed(
                f"failed to check node route to {ip.address.ip}: none via {host}"
            )


def check_overlay(node: IPRoute, conf: VxlanConf) -> None:
    if netlink.link_index(node, conf.device) is None:
        raise CheckFailed(
            f"failed to check vxlan device {conf.device}: it does not exist"
        )


def host_veth_name(conf: VxlanConf, req: Request) -> str:
    name: str = veth.host_name(
        conf.host_veth_prefix, conf.network, req.container_id, req.ifname
    )
    return name


PLUGIN = Plugin(name="vxlan", add=cmd_add, delete=cmd_del, check=cmd_check)
