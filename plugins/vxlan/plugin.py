"""ADD, DEL, CHECK, STATUS and GC of the vxlan plugin."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import socket
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from libcni import args, delegate, netns, version
from libcni.attachments import valid_attachments
from libcni.errors import (
    CheckFailed,
    CniError,
    ConflictingState,
    InvalidConfig,
    NotAvailable,
)
from libcni.records import RecordStore
from libcni.skel import Plugin, Request
from libcni.types import Interface, IPConfig, Result, Route, parse_mac, prev_result
from mycni_vxlan import netlink, overlay, routing, veth
from mycni_vxlan.config import TeardownConf, VxlanConf

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger(__name__)


def cmd_add(req: Request) -> Result:
    conf = VxlanConf.from_json(req.config)
    spec = veth.PairSpec(host_veth_name(conf, req), req.ifname, 0, requested_mac(req))
    records = RecordStore.for_network(conf.state_dir, conf.network)

    with ExitStack() as resources:
        pod_fd = netns.open_netns(req.netns)
        resources.callback(os.close, pod_fd)
        node = resources.enter_context(netlink.session())
        pod = resources.enter_context(netlink.session(pod_fd))
        if netlink.link_index(pod, req.ifname) is not None:
            raise ConflictingState(
                f"failed to create {req.ifname} in {req.netns}: it already exists"
            )

        underlay = overlay.find_underlay(node, conf)
        overlay.check_subnets(node, conf, underlay)

        with ExitStack() as undo:
            # Recorded first: a DEL after a crash half-way still finds what to undo.
            records.save(req.container_id, req.ifname, {"hostVeth": spec.host})
            undo.callback(records.remove_quietly, req.container_id, req.ifname)
            # Before the call: the IPAM may have committed a lease even when its
            # answer is lost (timeout, garbled output). Its DEL is idempotent.
            undo.callback(delegate.delete_quietly, conf.ipam_type, req)
            lease = delegate.add(conf.ipam_type, req)
            if not lease.ips:
                raise InvalidConfig(f"ipam.type: {conf.ipam_type} returned no address")
            overlay.check_lease(conf, overlay.local_node(conf, underlay), lease.ips)

            # Node-wide state, shared by every pod and kept: only after the IPAM
            # accepted its config, so a broken config never touches the overlay.
            ipv6 = any(ip.address.version == 6 for ip in lease.ips)
            with netlink.step(f"set up vxlan device {conf.device}"):
                vx = overlay.ensure_device(node, conf, underlay, ipv6)
            if vx.created:
                # A first ADD that fails must not leave a device (and a VNI) that
                # a corrected config would then trip over.
                undo.callback(remove_unused_device, node, conf, records, req)
            with netlink.step(f"program routes to other nodes on {conf.device}"):
                overlay.ensure_peers(node, conf, vx)

            spec = veth.PairSpec(spec.host, spec.ifname, vx.mtu, spec.pod_mac)
            with netlink.step(f"create veth {spec.host} / {spec.ifname}"):
                pair = veth.create_pair(node, pod, pod_fd, spec)
            undo.callback(netlink.delete_link_quietly, node, spec.host)

            ips = tuple(
                IPConfig(ip.address, routing.gateway_of(ip), 1) for ip in lease.ips
            )
            routes = routing.pod_routes(ips, lease.routes)
            routing.ensure_forwarding({ip.address.version for ip in ips})
            with netlink.step(f"configure addresses and routes of pod {req.ifname}"):
                routing.configure_pod(pod, pair, ips, routes)
            with netlink.step(f"configure host veth {spec.host}"):
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
    conf = TeardownConf.from_json(req.config)
    records = RecordStore.for_network(conf.state_dir, conf.network)

    remove_veth(host_veth_name(conf, req))

    delegate.delete(conf.ipam_type, req)
    records.remove_quietly(req.container_id, req.ifname)


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


def cmd_status(req: Request) -> None:
    """Ready when an ADD could succeed now: delegate present and ready, underlay up."""
    conf = VxlanConf.from_json(req.config)
    try:
        delegate.find(conf.ipam_type, req.path)
    except CniError as exc:
        raise NotAvailable(f"ipam plugin not available: {exc.msg}") from exc

    with netlink.session() as node:
        try:
            underlay = overlay.find_underlay(node, conf)
            overlay.overlay_mtu(conf, underlay)
        except CniError as exc:
            raise NotAvailable(f"underlay not usable: {exc.msg}") from exc

    if "1.1.0" in delegate.versions(conf.ipam_type, req):
        delegate.status(conf.ipam_type, req)


def cmd_gc(req: Request) -> None:
    """Release every attachment of this network the runtime no longer lists."""
    conf = TeardownConf.from_json(req.config)
    valid = valid_attachments(req.config)
    records = RecordStore.for_network(conf.state_dir, conf.network)
    ipam_versions = delegate.versions(conf.ipam_type, req)
    failures: list[str] = []

    for entry in records.entries():
        if (entry.container_id, entry.ifname) in valid:
            continue
        stale = dataclasses.replace(
            req, container_id=entry.container_id, ifname=entry.ifname, netns=""
        )
        try:
            remove_veth(host_veth_name(conf, stale))
            if "1.1.0" not in ipam_versions:
                # No GC in that IPAM: release this attachment's lease with a DEL.
                older = version.newest_of(ipam_versions)
                delegate.delete(conf.ipam_type, delegate.speaking(stale, older))
        except (CniError, OSError) as exc:  # keep going: GC reports, it does not stop
            failures.append(f"{entry.container_id}/{entry.ifname}: {exc}")
            continue
        records.remove_quietly(entry.container_id, entry.ifname)
        log.info("gc released %s/%s", entry.container_id, entry.ifname)

    if "1.1.0" in ipam_versions:
        try:
            delegate.gc(conf.ipam_type, req)
        except CniError as exc:
            failures.append(f"ipam {conf.ipam_type}: {exc.msg}")
    if failures:
        raise CniError("failed to collect garbage: " + "; ".join(failures))


def remove_unused_device(
    node: IPRoute, conf: VxlanConf, records: RecordStore, req: Request
) -> None:
    """Undo of a device this ADD created: unless another ADD of the network has
    recorded itself meanwhile. Every ADD records itself before it looks for the
    device, so one that found ours keeps it; one that comes later makes its own."""
    mine = (req.container_id, req.ifname)
    others = [e for e in records.entries() if (e.container_id, e.ifname) != mine]
    if others:
        log.warning(
            "leaving vxlan device %s of a failed ADD: %s/%s of the same network may "
            "use it",
            conf.device,
            others[0].container_id,
            others[0].ifname,
        )
        return
    netlink.delete_link_quietly(node, conf.device)


def requested_mac(req: Request) -> str | None:
    """The pod MAC from runtimeConfig.mac (capability "mac"), args.cni.mac or MAC=."""
    runtime = req.config.get("runtimeConfig")
    if isinstance(runtime, dict) and runtime.get("mac"):
        return parse_mac(runtime["mac"], "runtimeConfig.mac")
    value = args.lookup(req.config, req.args, "mac", "MAC")
    return parse_mac(value, "args.cni.mac / CNI_ARGS MAC") if value else None


def remove_veth(host: str) -> None:
    try:
        socket.if_nametoindex(host)
    except OSError:
        # Already gone (DEL twice, GC): no need to pay for pyroute2's import.
        log.debug("host veth %s already gone", host)
        return
    with netlink.session() as node, netlink.step(f"delete host veth {host}"):
        if netlink.delete_link_quietly(node, host):
            log.debug("deleted host veth %s", host)
        else:
            log.debug("host veth %s already gone", host)


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


def _route_dst(route: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    family = route["family"]
    dst = route.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
    return ipaddress.ip_network(f"{dst}/{route['dst_len']}")


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
    """The VXLAN device, this node's VTEP addresses and the way to every other node."""
    index = netlink.link_index(node, conf.device)
    if index is None:
        raise CheckFailed(
            f"failed to check vxlan device {conf.device}: it does not exist"
        )
    try:
        underlay = overlay.find_underlay(node, conf)
    except CniError as exc:
        raise CheckFailed(f"failed to check the underlay: {exc.msg}") from exc
    mtu = int(node.get_links(index)[0].get_attr("IFLA_MTU"))
    vx = overlay.Overlay(index, conf.device, mtu, overlay.local_node(conf, underlay))
    overlay.check_peers(node, conf, vx)


def host_veth_name(conf: VxlanConf | TeardownConf, req: Request) -> str:
    return veth.host_name(
        conf.host_veth_prefix, conf.network, req.container_id, req.ifname
    )


PLUGIN = Plugin(
    name="vxlan",
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
    known_args=frozenset({"IP", "MAC"}),
)
