"""The ebpf-redirect handlers: attach the fast path to a pod's host veth; undo it."""

from __future__ import annotations

import logging
from contextlib import ExitStack

from libcni.errors import BpfFailure, InvalidConfig
from libcni.skel import Plugin, Request
from libcni.types import Result, prev_result

from . import bpffs, links, maps, program, tc
from .attachment import Attachment
from .bpfobj import FROM_POD
from .config import EbpfConf
from .pins import Pins
from .state import Record, Store

log = logging.getLogger(__name__)


def cmd_add(req: Request) -> Result:
    conf = EbpfConf.from_config(req.config)
    prev = _require_prev_result(req)
    want = Attachment.from_prev_result(prev, req.ifname)
    host = _find_host_link(want.host_veth)
    pins = Pins(conf.pin_root)

    bpffs.ensure_mounted(conf.pin_root)
    program.ensure_loaded(pins, conf.object_dir / FROM_POD.file_name)

    store = Store.for_network(conf.state_dir, req.network)
    record = Record(
        container_id=req.container_id,
        ifname=req.ifname,
        host_veth=host.name,
        host_ifindex=host.index,
        pod_mac=":".join(f"{b:02x}" for b in want.pod_mac),
        ips=want.ips,
        priority=conf.priority,
    )
    endpoint = maps.Endpoint(host.index, want.pod_mac, host.mac)
    with ExitStack() as undo:
        # The record comes first: a DEL after a crash half-way finds what to undo.
        store.save(record)
        undo.callback(store.remove_quietly, req.container_id, req.ifname)

        tc.ensure_clsact(host.name)
        tc.attach(host.name, conf.priority, pins.program)
        undo.callback(tc.detach_quietly, host.name, conf.priority)

        for ip in want.ips:
            maps.put_endpoint(pins.ep4, ip, endpoint)
            undo.callback(maps.delete_endpoint_quietly, pins.ep4, ip, host.index)
        undo.pop_all()

    return prev


def cmd_del(req: Request) -> None:
    conf = EbpfConf.from_config(req.config)
    store = Store.for_network(conf.state_dir, req.network)
    record = store.load(req.container_id, req.ifname) or _record_from_prev(req, conf)
    if record is None:
        log.debug("nothing recorded for %s/%s", req.container_id, req.ifname)
        return
    pins = Pins(conf.pin_root)

    for ip in record.ips:
        maps.delete_endpoint_quietly(pins.ep4, ip, record.host_ifindex)

    host = links.find(record.host_veth)
    if host is not None and host.index == record.host_ifindex:
        tc.detach_quietly(host.name, record.priority)

    store.remove_quietly(req.container_id, req.ifname)


def cmd_check(req: Request) -> None:
    conf = EbpfConf.from_config(req.config)
    store = Store.for_network(conf.state_dir, req.network)
    record = store.load(req.container_id, req.ifname)
    if record is None:
        raise BpfFailure(
            f"failed to check {req.container_id}/{req.ifname}: no record of its ADD"
        )
    host = links.find(record.host_veth)
    if host is None or host.index != record.host_ifindex:
        raise BpfFailure(f"failed to check {record.host_veth}: the host veth is gone")
    pins = Pins(conf.pin_root)

    prog_id = program.pinned_program_id(pins.program)
    if prog_id not in tc.attached_program_ids(host.name, record.priority):
        raise BpfFailure(
            f"failed to check {host.name}: program {prog_id} is not attached to its "
            f"ingress at pref {record.priority}"
        )

    want = maps.Endpoint(host.index, maps.parse_mac(record.pod_mac), host.mac)
    have = maps.dump_endpoints(pins.ep4)
    for ip in record.ips:
        if have.get(ip) != want:
            raise BpfFailure(
                f"failed to check endpoint {ip}: map has {have.get(ip)}, want {want}"
            )


def _require_prev_result(req: Request) -> Result:
    prev = prev_result(req.config)
    if prev is None:
        raise InvalidConfig(
            "prevResult: missing; ebpf-redirect is a chained plugin and must follow "
            "the plugin that creates the veth"
        )
    return prev


def _find_host_link(name: str) -> links.Link:
    host = links.find(name)
    if host is None:
        raise InvalidConfig(f"prevResult: host interface {name} not found on the node")
    return host


def _record_from_prev(req: Request, conf: EbpfConf) -> Record | None:
    """DEL without our record (ADD died early, or state was wiped): use prevResult."""
    prev = prev_result(req.config)
    if prev is None:
        return None
    try:
        want = Attachment.from_prev_result(prev, req.ifname)
    except InvalidConfig as exc:
        log.warning(
            "DEL %s: unusable prevResult (%s); nothing to undo",
            req.container_id,
            exc.msg,
        )
        return None
    host = links.find(want.host_veth)
    if host is None:
        # Without the veth its ifindex is unknown, and entries are deleted only when
        # they point at our ifindex; a stale entry is overwritten by the next pod
        # given that address.
        return None
    return Record(
        container_id=req.container_id,
        ifname=req.ifname,
        host_veth=host.name,
        host_ifindex=host.index,
        pod_mac=":".join(f"{b:02x}" for b in want.pod_mac),
        ips=want.ips,
        priority=conf.priority,
    )


PLUGIN = Plugin(
    name="ebpf-redirect",
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    # Keys meant for the plugins before us in the chain.
    known_args=frozenset({"IP", "MAC"}),
)
