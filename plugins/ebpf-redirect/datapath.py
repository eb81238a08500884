"""Putting one pod on the fast path and taking it off: programs, filters, map entries.

The per-node parts (programs, the VXLAN device's filter, the overlay map entry) are
made by the first ADD that needs them and checked by later ones; the per-pod parts
are the filter on the pod's host veth and its endpoint entries.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from libcni.errors import BpfFailure
from libcni.types import IPAddress

from . import command, hook, maps, overlay, program, tc, tcx, upgrade
from .bpfobj import FROM_OVERLAY, FROM_POD, ObjectSpec
from .config import EbpfConf
from .links import Link
from .pins import Pins

log = logging.getLogger(__name__)

# For tests and for operators who must rule the fast path out in a hurry: when set,
# ADD behaves as if the kernel refused our programs, for the reason given here.
FORCE_UNAVAILABLE_ENV = "MYCNI_EBPF_UNAVAILABLE"


class Unavailable(BpfFailure):
    """The kernel would not take the fast path (load or attach refused).

    ADD answers by leaving the pod on the stack path, which works without us.
    """


@dataclass(frozen=True)
class PodLink:
    """What from_pod needs of one pod: its host veth, its MAC and its addresses."""

    host: Link
    pod_mac: bytes
    ips: tuple[IPAddress, ...]


def forced_unavailable() -> str:
    return os.environ.get(FORCE_UNAVAILABLE_ENV, "")


@dataclass(frozen=True)
class Attached:
    """How from_pod went on the pod's veth, and the VXLAN device from_overlay is on
    ("" for none)."""

    mode: str
    overlay: str


def attach_pod(conf: EbpfConf, pod: PodLink) -> Attached:
    """Attach from_pod to the pod's veth and map its addresses; ensure the overlay.

    Undoes its own steps on failure; raises Unavailable when the kernel refuses a
    program, a tcx link or a filter.
    """
    reason = forced_unavailable()
    if reason:
        raise Unavailable(f"fast path unavailable: {reason}")
    pins = Pins(conf.pin_root)
    endpoint = maps.Endpoint(pod.host.index, pod.pod_mac, pod.host.mac)
    try:
        upgrade.ensure_current(conf, pins)
    except (command.CommandFailed, tcx.TcxError) as exc:
        # The old layout stays in place and its pods keep working; the next ADD
        # tries again.
        raise Unavailable(exc.msg, exc.details) from exc

    with ExitStack() as undo:
        ours = [_load(pins, conf, FROM_POD)]
        mode = _attach(conf, pod.host, pins.program, ours, undo)
        for ip in pod.ips:
            pin = pins.endpoint_map(ip)
            maps.put_endpoint(pin, ip, endpoint)
            undo.callback(maps.delete_endpoint_quietly, pin, ip, pod.host.index)
        device = ensure_overlay(conf, pins)
        undo.pop_all()
    return Attached(mode, device.name if device else "")


def ensure_overlay(conf: EbpfConf, pins: Pins) -> Link | None:
    """from_overlay on the node's VXLAN device and the device in mycni_ovl: once per
    node, idempotent. The filter stays when pods go; with no endpoint left in the
    map it passes every frame to the stack."""
    device = overlay.find_device(conf)
    if device is None:
        return None
    ours = [_load(pins, conf, FROM_OVERLAY)]
    with ExitStack() as undo:
        _attach(conf, device, pins.overlay_program, ours, undo)
        maps.put_overlay(pins.ovl, device.index)
        undo.pop_all()
    return device


@dataclass(frozen=True)
class PodHook:
    """Where and how from_pod went on for one pod, as its record says."""

    host_ifindex: int
    priority: int
    mode: str


def detach_pod(
    pins: Pins, host: Link | None, at: PodHook, ips: tuple[IPAddress, ...]
) -> None:
    """Remove the pod's endpoint entries and our program on its veth, if still there.

    Entries pointing at another ifindex belong to a newer pod with the same address
    and stay; a filter that is not ours stays too. A tcx link is found by the
    recorded ifindex, so it goes even when its veth went first.
    """
    for ip in ips:
        maps.delete_endpoint_quietly(pins.endpoint_map(ip), ip, at.host_ifindex)
    same = host is not None and host.index == at.host_ifindex
    ours = program.pinned_programs_quietly(pins) if same else []
    hook.detach_quietly(
        pins.root, host.name if same and host else None, at.host_ifindex,
        at.priority, ours, at.mode,
    )  # fmt: skip


def _load(pins: Pins, conf: EbpfConf, spec: ObjectSpec) -> tc.Program:
    try:
        return program.ensure_loaded(pins, conf.object_dir / spec.file_name, spec)
    except (command.CommandFailed, tcx.TcxError) as exc:
        # bpftool or the bpf syscall got as far as the kernel, which refused
        # (verifier, missing helper, no BPF permission): no fast path here.
        raise Unavailable(exc.msg, exc.details) from exc


def _attach(
    conf: EbpfConf, dev: Link, pin: Path, ours: list[tc.Program], undo: ExitStack
) -> str:
    try:
        done = hook.attach(
            conf.pin_root, dev, conf.priority, pin, ours, conf.attach_mode
        )
    except command.CommandFailed as exc:
        raise Unavailable(exc.msg, exc.details) from exc
    except tcx.TcxError as exc:
        # EPERM, EINVAL from a kernel without tcx when attachMode insists on it...
        raise Unavailable(exc.msg) from exc
    if done.new:
        undo.callback(
            hook.detach_quietly, conf.pin_root, dev.name, dev.index, conf.priority,
            ours, done.mode,
        )  # fmt: skip
    return done.mode
