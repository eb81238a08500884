"""The clsact qdisc and our cls_bpf filters on a device's ingress, through tc.

A hook may carry other users' filters. We only ever replace or delete the filter at
our (pref, handle), and only when the program it runs is ours: the pinned program
itself (same id) or the same code (same tag, e.g. loaded again after a reboot).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libcni.errors import ConflictingState

from . import command

log = logging.getLogger(__name__)

# One filter per (pref, handle) on the ingress hook; the handle is ours, the pref
# comes from the config so that other tc users can order themselves around us.
HANDLE = 1


@dataclass(frozen=True)
class Program:
    """A loaded BPF program as tc and bpftool name it."""

    id: int
    tag: str


@dataclass(frozen=True)
class Filter:
    """One filter on an ingress hook; prog is None for anything but an eBPF one."""

    pref: int
    handle: int | None
    kind: str
    prog: Program | None

    def describe(self) -> str:
        what = f"program {self.prog.id}" if self.prog else f"a {self.kind} filter"
        return f"{what} at pref {self.pref} handle {self.handle or 0:#x}"


def owns(filt: Filter, ours: Collection[Program]) -> bool:
    """Whether filt runs one of our programs (by id, or by tag for a reload)."""
    if filt.prog is None:
        return False
    return any(filt.prog.id == p.id or filt.prog.tag == p.tag for p in ours)


def ensure_clsact(dev: str) -> None:
    """Add the clsact qdisc; `replace` keeps an existing one and its filters."""
    command.run(
        f"add clsact qdisc to {dev}", ["tc", "qdisc", "replace", "dev", dev, "clsact"]
    )


def ingress_filters(dev: str) -> list[Filter]:
    """Every filter on dev's ingress hook (tc lists a header line per pref first)."""
    listed: list[dict[str, Any]] = command.run_json(
        f"list ingress filters of {dev}",
        ["tc", "-j", "filter", "show", "dev", dev, "ingress"],
    )
    found = []
    for entry in listed:
        options = entry.get("options")
        if not isinstance(options, dict):
            continue
        handle = options.get("handle")
        prog = options.get("prog")
        found.append(
            Filter(
                pref=int(entry.get("pref", 0)),
                handle=int(handle, 16) if isinstance(handle, str) else None,
                kind=str(entry.get("kind", "")),
                prog=(
                    Program(int(prog["id"]), str(prog.get("tag", "")))
                    if isinstance(prog, dict) and "id" in prog
                    else None
                ),
            )
        )
    return found


def at_our_slot(dev: str, pref: int) -> Filter | None:
    """The filter at (pref, HANDLE) on dev's ingress, ours or not."""
    return next(
        (f for f in ingress_filters(dev) if f.pref == pref and f.handle == HANDLE),
        None,
    )


def attach(dev: str, pref: int, program_pin: Path, ours: Collection[Program]) -> bool:
    """Attach the pinned program in direct-action mode at (pref, HANDLE).

    Returns False when it is attached there already (nothing done). A filter of
    someone else at that slot is left alone and reported as ConflictingState.
    `object-pinned` (tc 6.1; `pinned` is accepted too) takes the already loaded
    program: tc neither loads the object again nor creates maps of its own.
    """
    filters = ingress_filters(dev)
    # Another kind of filter at our pref (u32, flower...) holds the whole pref: the
    # kernel would refuse ours there, which must not read as "no fast path here".
    for other in filters:
        if (
            other.pref == pref
            and not owns(other, ours)
            and (other.kind != "bpf" or other.handle == HANDLE)
        ):
            raise ConflictingState(
                f"failed to attach to {dev} ingress: {other.describe()} is not "
                "ours; choose another priority"
            )
    current = next((f for f in filters if f.pref == pref and f.handle == HANDLE), None)
    if current is not None and current.prog in ours:
        log.debug("%s ingress pref %d already runs %s", dev, pref, current.prog)
        return False
    log.debug("attaching %s to %s ingress pref %d", program_pin, dev, pref)
    _replace(dev, pref, program_pin)
    return True


def reattach(
    dev: str, pref: int, program_pin: Path, new: Program, old: Collection[Program]
) -> bool:
    """Swap an older program of ours at (pref, HANDLE) for the pinned one.

    `tc filter replace` at the same pref and handle changes the program in one
    netlink request (cls_bpf_change swaps it under RCU), so no frame misses the
    filter. Returns False, doing nothing, when the slot is empty, runs the new
    program already or runs a filter that is not ours.
    """
    current = at_our_slot(dev, pref)
    if current is None or current.prog == new or not owns(current, old):
        return False
    log.debug("re-attaching %s ingress pref %d: %s -> %s", dev, pref, current, new)
    _replace(dev, pref, program_pin)
    return True


def _replace(dev: str, pref: int, program_pin: Path) -> None:
    command.run(
        f"attach BPF filter to {dev} ingress",
        [
            "tc", "filter", "replace", "dev", dev, "ingress",
            "pref", str(pref), "handle", str(HANDLE),
            "bpf", "da", "object-pinned", str(program_pin),
        ],
    )  # fmt: skip


def detach_quietly(dev: str, pref: int, ours: Collection[Program]) -> None:
    """Delete our filter; tolerate it, the clsact qdisc or the device being gone.

    A filter at our slot that runs someone else's program stays, with a warning.
    """
    try:
        current = at_our_slot(dev, pref)
    except command.CommandFailed:
        log.debug("cannot list filters of %s: device gone", dev)
        return
    if current is None:
        log.debug("no filter on %s ingress pref %d", dev, pref)
        return
    if not owns(current, ours):
        log.warning(
            "%s ingress: %s is not ours; left in place", dev, current.describe()
        )
        return
    try:
        command.run(
            f"detach BPF filter from {dev} ingress",
            [
                "tc", "filter", "delete", "dev", dev, "ingress",
                "pref", str(pref), "handle", str(HANDLE), "bpf",
            ],
        )  # fmt: skip
    except command.CommandFailed:
        # tc says only "error talking to the kernel" with exit status 2 for
        # ENOENT and for real failures alike: read the state back instead.
        if _present(dev, pref):
            raise
        log.debug("filter on %s ingress pref %d went away concurrently", dev, pref)


def _present(dev: str, pref: int) -> bool:
    try:
        return at_our_slot(dev, pref) is not None
    except command.CommandFailed:
        return False  # the device itself is gone
