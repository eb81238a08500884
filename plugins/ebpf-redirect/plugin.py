"""The ebpf-redirect handlers: put a pod on the fast path, check, undo, STATUS, GC."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import replace

from libcni.attachments import valid_attachments
from libcni.errors import (
    BpfFailure,
    CheckFailed,
    CniError,
    ConflictingState,
    InvalidConfig,
    IOFailure,
    LimitedConnectivity,
    NotAvailable,
)
from libcni.skel import Plugin, Request
from libcni.types import PassThrough, Result, pass_through, prev_result

from . import bpffs, datapath, hook, links, peer, readiness, verify
from .attachment import Attachment
from .config import EbpfConf
from .lock import locked
from .pins import Pins
from .state import Record, Store

log = logging.getLogger(__name__)

DISABLED = "fastPath is false in the config"
SHAPED = (
    "runtimeConfig.bandwidth limits this pod, and the shaping qdiscs on its veth "
    "see only the host stack path"
)
# Chosen by the config, not forced by the kernel: CHECK and STATUS accept these.
INTENDED = (DISABLED, SHAPED)


def cmd_add(req: Request) -> Result | PassThrough:
    conf = EbpfConf.from_config(req.config)
    prev = _require_prev_result(req)
    want = Attachment.from_prev_result(prev, req.ifname)
    host = _find_host_link(want.host_veth)
    store = Store.for_network(conf.state_dir, req.network)
    owner = _owner_of(store, host, req)
    if owner:
        # Its DEL would take the other pod's program and entries with it.
        raise ConflictingState(
            f"prevResult: host interface {host.name} belongs to {owner}"
        )
    peer.require_pod_end(host, req.netns, req.ifname, want.host_field)
    peer.require_routed_to(host, want.ips)
    record = _record(req, conf, host, want)

    with ExitStack() as undo:
        # The record comes first: a DEL after a crash half-way finds what to undo.
        store.save(record)
        undo.callback(store.remove_quietly, req.container_id, req.ifname)

        if record.mode == "fast":
            bpffs.ensure_mounted(conf.pin_root)
            pod = datapath.PodLink(host, want.pod_mac, want.ips)
            try:
                done = datapath.attach_pod(conf, pod)
                record = replace(record, attach=done.mode, overlay=done.overlay)
                undo.callback(_release, Pins(conf.pin_root), record)
            except datapath.Unavailable as exc:
                log.warning(
                    "%s/%s: %s; the pod's traffic takes the host stack",
                    req.container_id,
                    req.ifname,
                    exc.msg,
                )
                record = replace(record, mode="stack", reason=exc.msg)
            store.save(record)
        undo.pop_all()

    # Handed on untouched: a chained plugin must not drop what it does not model.
    return pass_through(req.config, req.cni_version) or prev


def cmd_del(req: Request) -> None:
    conf = EbpfConf.from_config(req.config, teardown=True)
    store = Store.for_network(conf.state_dir, req.network)
    try:
        record = store.load(req.container_id, req.ifname)
    except IOFailure as exc:
        # A torn or corrupt record must not make every later DEL fail.
        log.warning("%s; using prevResult instead", exc.msg)
        record = None
    record = record or _record_from_prev(req, conf, store)
    if record is None:
        log.debug("nothing recorded for %s/%s", req.container_id, req.ifname)
        store.remove_quietly(req.container_id, req.ifname)
        return

    _release(Pins(conf.pin_root), record)
    store.remove_quietly(req.container_id, req.ifname)


def cmd_check(req: Request) -> None:
    conf = EbpfConf.from_config(req.config)
    store = Store.for_network(conf.state_dir, req.network)
    record = store.load(req.container_id, req.ifname)
    if record is None:
        raise CheckFailed(
            f"failed to check {req.container_id}/{req.ifname}: no record of its ADD"
        )

    found = verify.differences(record, Pins(conf.pin_root))
    if found:
        raise CheckFailed(
            f"failed to check {req.container_id}/{req.ifname}: " + "; ".join(found)
        )
    if record.mode != "fast" and record.reason not in INTENDED:
        raise LimitedConnectivity(
            f"{req.container_id}/{req.ifname} is on the stack path, not the fast "
            f"path: {record.reason}"
        )
    log.info(
        "%s/%s: %s path%s",
        req.container_id,
        req.ifname,
        record.mode,
        f", attached by {record.attach}" if record.mode == "fast" else "",
    )


def cmd_status(req: Request) -> None:
    """Ready when an ADD could succeed now; 51 when it would miss the fast path."""
    conf = EbpfConf.from_config(req.config)
    if not conf.fast_path:
        log.info("STATUS: %s; pods take the host stack", DISABLED)
        return
    found = readiness.blockers(conf)
    if found:
        raise NotAvailable("ebpf-redirect not available: " + "; ".join(found))

    reason = datapath.forced_unavailable()
    if reason:
        raise LimitedConnectivity(
            f"fast path unavailable: {reason}; pods take the host stack"
        )
    features = readiness.probe()
    gaps = features.gaps(conf.attach_mode)
    if gaps:
        raise LimitedConnectivity(
            "fast path unavailable: " + "; ".join(gaps) + "; pods take the host stack"
        )
    log.info(
        "STATUS: fast path ready; new pods attach by %s",
        features.attach_mode(conf.attach_mode),
    )
    store = Store.for_network(conf.state_dir, req.network)
    fallen = [
        r for r in store.records_all() if r.mode != "fast" and r.reason not in INTENDED
    ]
    if fallen:
        raise LimitedConnectivity(
            f"{len(fallen)} pods of {req.network} are on the stack path, e.g. "
            f"{fallen[0].container_id}/{fallen[0].ifname}: {fallen[0].reason}"
        )


def cmd_gc(req: Request) -> None:
    """Release every attachment of this network that the runtime no longer lists."""
    conf = EbpfConf.from_config(req.config, teardown=True)
    valid = valid_attachments(req.config)
    store = Store.for_network(conf.state_dir, req.network)
    pins = Pins(conf.pin_root)
    failures = []

    for record in store.records_all():
        if (record.container_id, record.ifname) in valid:
            continue
        try:
            _release(pins, record)
        except CniError as exc:  # keep going: GC reports, it does not stop
            failures.append(f"{record.container_id}/{record.ifname}: {exc.msg}")
            continue
        store.remove_quietly(record.container_id, record.ifname)
        log.info("gc released %s/%s", record.container_id, record.ifname)

    try:
        for name in hook.remove_defunct_links(pins.root):
            log.info("gc removed link pin %s: its device is gone", name)
    except CniError as exc:
        failures.append(exc.msg)

    if failures:
        raise BpfFailure("failed to collect garbage: " + "; ".join(failures))


def _release(pins: Pins, record: Record) -> None:
    host = links.find(record.host_veth)
    if not pins.root.is_dir():
        return  # nothing was ever pinned (or the bpffs is gone): no entry, no filter
    # Under the pin root's lock: a layout migration fills the new map from the
    # records, and an entry removed half-way through it would come back.
    with locked(pins.root):
        at = datapath.PodHook(record.host_ifindex, record.priority, record.attach)
        datapath.detach_pod(pins, host, at, record.ips)


def _record(req: Request, conf: EbpfConf, host: links.Link, want: Attachment) -> Record:
    return Record(
        container_id=req.container_id,
        ifname=req.ifname,
        host_veth=host.name,
        host_ifindex=host.index,
        pod_mac=":".join(f"{b:02x}" for b in want.pod_mac),
        ips=want.ips,
        priority=conf.priority,
        mode="fast" if conf.fast_path and not conf.shaped else "stack",
        reason=DISABLED if not conf.fast_path else SHAPED if conf.shaped else "",
        # Set by ADD once attached; a stack-path pod has no hook to name.
        attach="",
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
    try:
        kind = links.driver(name)
    except IOFailure as exc:  # lo and other drivers without ethtool
        raise InvalidConfig(
            f"prevResult: host interface {name} is not a pod's veth: {exc.msg}"
        ) from exc
    if kind != "veth":
        # A bridge (say) is shared by every pod: one pod's DEL would take the
        # others' filter with it. Only a per-pod veth, as vxlan makes, will do.
        raise InvalidConfig(
            f"prevResult: host interface {name} is a {kind} device, not a pod's veth;"
            " ebpf-redirect must follow vxlan in the chain"
        )
    return host


def _record_from_prev(req: Request, conf: EbpfConf, store: Store) -> Record | None:
    """DEL without our record (ADD died early, or state was wiped): use prevResult,
    unless the veth it names now belongs to another sandbox."""
    try:
        # A prevResult DEL cannot read is as good as none: nothing to undo from it.
        prev = prev_result(req.config)
        if prev is None:
            return None
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
    owner = _owner_of(store, host, req)
    if owner:
        log.warning(
            "DEL %s/%s: host veth %s (ifindex %d) now belongs to %s; left alone",
            req.container_id,
            req.ifname,
            host.name,
            host.index,
            owner,
        )
        return None
    return _record(req, conf, host, want)


def _owner_of(store: Store, host: links.Link, req: Request) -> str:
    """The other attachment whose record holds this veth (a newer sandbox that
    reuses the name, e.g. a plugin naming veths after the pod), or ""."""
    for other in store.records_all():
        same = (other.container_id, other.ifname) == (req.container_id, req.ifname)
        if not same and other.host_ifindex == host.index:
            return f"{other.container_id}/{other.ifname}"
    return ""


PLUGIN = Plugin(
    name="ebpf-redirect",
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
    # Keys meant for the plugins before us in the chain.
    known_args=frozenset({"IP", "MAC"}),
)
