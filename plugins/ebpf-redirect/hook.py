"""How one of our programs hangs on a device's ingress: a tcx link or a clsact filter.

attachMode "auto" takes tcx where the kernel has it (6.6+) and a clsact cls_bpf
filter elsewhere; "tcx" and "tc" insist on one. A device that runs one of our
programs already keeps the way it has, so no device ever runs ours twice.
tcx links are pinned under <pinRoot>/links/, outside the versioned layout: they
belong to devices, not to a map layout, and an upgrade swaps their program.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from libcni.errors import IOFailure

from . import tc, tcx
from .links import Link

log = logging.getLogger(__name__)

AUTO = "auto"
TCX = "tcx"
TC = "tc"
LINKS_DIR = "links"


def link_pin(pin_root: Path, ifindex: int) -> Path:
    """Where the tcx link on the ingress of device `ifindex` is pinned.

    By ifindex, not by name: a veth name comes back with the next pod, an ifindex
    does not (a netns hands them out in increasing order).
    """
    return pin_root / LINKS_DIR / f"if{ifindex}-ingress"


def choose(wanted: str, tcx_ok: bool, current: str | None) -> str:
    """The attach mode for a device: the one it has, else the configured one."""
    if current:
        return current
    if wanted == AUTO:
        return TCX if tcx_ok else TC
    return wanted


def current_mode(
    pin_root: Path, dev: Link, priority: int, ours: Collection[tc.Program]
) -> str | None:
    """TCX or TC when one of our programs is on dev's ingress already, else None."""
    found = tcx.info(link_pin(pin_root, dev.index))
    if found is not None and found.attached and found.ifindex == dev.index:
        return TCX
    slot = tc.at_our_slot(dev.name, priority)
    if slot is not None and tc.owns(slot, ours):
        return TC
    return None


@dataclass(frozen=True)
class Attached:
    mode: str
    new: bool  # False: ours was there already and nothing was done


def attach(
    pin_root: Path,
    dev: Link,
    priority: int,
    program_pin: Path,
    ours: Collection[tc.Program],
    wanted: str,
) -> Attached:
    """Put the pinned program on dev's ingress; raises tcx.TcxError or
    command.CommandFailed (the caller's Unavailable) when the kernel refuses."""
    current = current_mode(pin_root, dev, priority, ours)
    mode = choose(wanted, current is None and tcx_supported(dev.index), current)
    if current:
        log.debug("%s ingress already runs ours (%s)", dev.name, current)
        return Attached(mode, new=False)
    if mode == TCX:
        pin = link_pin(pin_root, dev.index)
        try:
            pin.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise IOFailure(
                f"failed to create link pin directory {pin.parent}: {exc.strerror}"
            ) from exc
        # A pin left by a device that went away (ifindex 0) is in the way.
        tcx.remove_quietly(pin)
        made = tcx.create(program_pin, dev.index, pin)
        log.debug("attached %s to %s by tcx link %d", program_pin, dev.name, made.id)
        return Attached(TCX, new=True)
    tc.ensure_clsact(dev.name)
    return Attached(TC, new=tc.attach(dev.name, priority, program_pin, ours))


def detach_quietly(
    pin_root: Path,
    dev_name: str | None,
    ifindex: int,
    priority: int,
    ours: Collection[tc.Program],
    mode: str,
) -> None:
    """Take our program off the device; tolerate it or the device being gone.

    dev_name is None when the device is gone or its name now belongs to another
    ifindex: only the link pin (by ifindex) is still ours to remove. The link pin
    goes whatever the mode: an ADD that died between attaching and recording its
    mode may have left one.
    """
    tcx.remove_quietly(link_pin(pin_root, ifindex))
    if mode != TCX and dev_name is not None:
        tc.detach_quietly(dev_name, priority, ours)


def reattach(
    pin_root: Path,
    dev: Link,
    priority: int,
    program_pin: Path,
    new: tc.Program,
    old: Collection[tc.Program],
) -> bool:
    """Swap an older program of ours on dev for the pinned one, in place, in
    whichever mode it hangs; False when there was nothing of ours to swap."""
    pin = link_pin(pin_root, dev.index)
    found = tcx.info(pin)
    if found is not None and found.attached:
        if found.prog_id == new.id or found.prog_id not in {p.id for p in old}:
            return False
        tcx.update(pin, program_pin)
        return True
    return tc.reattach(dev.name, priority, program_pin, new, old)


def problems(
    pin_root: Path,
    dev: Link,
    priority: int,
    ours: Collection[tc.Program],
    mode: str,
) -> list[str]:
    """CHECK: how dev's ingress differs from running our program in `mode`."""
    if mode == TCX:
        pin = link_pin(pin_root, dev.index)
        found = tcx.info(pin)
        if found is None:
            return [f"tcx link pin {pin} is missing"]
        if not found.attached or found.ifindex != dev.index:
            return [f"tcx link {found.id} on {dev.name} ingress is detached"]
        if found.prog_id not in {p.id for p in ours}:
            return [
                f"tcx link {found.id} on {dev.name} ingress is displaced: it runs "
                f"program {found.prog_id}, not ours"
            ]
        return []
    current = tc.at_our_slot(dev.name, priority)
    if current is None:
        return [f"filter on {dev.name} ingress at pref {priority} is absent"]
    if not tc.owns(current, ours):
        return [f"filter on {dev.name} ingress is displaced: {current.describe()}"]
    return []


def describe(
    pin_root: Path, dev: Link, priority: int, ours: Collection[tc.Program]
) -> str:
    """For inspect: what of ours is on dev's ingress."""
    found = tcx.info(link_pin(pin_root, dev.index))
    if found is not None and found.attached:
        owned = found.prog_id in {p.id for p in ours}
        return f"tcx link {found.id}" + ("" if owned else " (not our program)")
    slot = tc.at_our_slot(dev.name, priority)
    if slot is None:
        return "absent"
    return "tc filter" if tc.owns(slot, ours) else f"foreign: {slot.describe()}"


def attached_program(
    pin_root: Path, dev: Link, priority: int, ours: Collection[tc.Program]
) -> tc.Program | None:
    """The program of ours that dev's ingress runs, whichever way it hangs."""
    found = tcx.info(link_pin(pin_root, dev.index))
    if found is not None and found.attached:
        return next((p for p in ours if p.id == found.prog_id), None)
    slot = tc.at_our_slot(dev.name, priority)
    if slot is not None and tc.owns(slot, ours):
        return slot.prog
    return None


def remove_defunct_links(pin_root: Path) -> list[str]:
    """GC: unpin links whose device is gone (the kernel detached them); returns
    the pins removed."""
    directory = pin_root / LINKS_DIR
    try:
        pins = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for pin in pins:
        try:
            found = tcx.info(pin)
            if found is None or found.attached:
                continue
            tcx.remove_quietly(pin)
        except tcx.TcxError as exc:
            log.warning("cannot clean up link pin %s: %s; left in place", pin, exc)
            continue
        removed.append(pin.name)
    return removed


_probed: dict[int, bool] = {}


def tcx_supported(ifindex: int) -> bool:
    """Whether the kernel has tcx (6.6+): a read-only query of dev's tcx hook."""
    if ifindex not in _probed:
        _probed[ifindex] = tcx.supported(ifindex)
    return _probed[ifindex]
