"""The clsact qdisc and our cls_bpf filter on a host veth's ingress, through tc."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import command

log = logging.getLogger(__name__)

# One filter per (pref, handle) on the ingress hook; the handle is ours, the pref
# comes from the config so that other tc users can order themselves around us.
HANDLE = 1


def ensure_clsact(dev: str) -> None:
    """Add the clsact qdisc; `replace` keeps an existing one and its filters."""
    command.run(
        f"add clsact qdisc to {dev}", ["tc", "qdisc", "replace", "dev", dev, "clsact"]
    )


def attach(dev: str, pref: int, program_pin: Path) -> None:
    """Attach the pinned program in direct-action mode, replacing our own filter.

    `object-pinned` (tc 6.1; `pinned` is accepted too) takes the already loaded
    program: tc neither loads the object again nor creates maps of its own.
    """
    log.debug("attaching %s to %s ingress pref %d", program_pin, dev, pref)
    command.run(
        f"attach BPF filter to {dev} ingress",
        [
            "tc", "filter", "replace", "dev", dev, "ingress",
            "pref", str(pref), "handle", str(HANDLE),
            "bpf", "da", "object-pinned", str(program_pin),
        ],
    )  # fmt: skip


def attached_program_ids(dev: str, pref: int) -> list[int]:
    """Program ids of bpf filters with our pref and handle on dev's ingress."""
    filters: list[dict[str, Any]] = command.run_json(
        f"list ingress filters of {dev}",
        ["tc", "-j", "filter", "show", "dev", dev, "ingress"],
    )
    ids = []
    for entry in filters:
        options = entry.get("options", {})
        if (
            entry.get("kind") == "bpf"
            and entry.get("pref") == pref
            and options.get("handle") == hex(HANDLE)
            and "prog" in options
        ):
            ids.append(int(options["prog"]["id"]))
    return ids


def detach_quietly(dev: str, pref: int) -> None:
    """Delete our filter; tolerate it (or the clsact qdisc) being gone already."""
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
        if _filter_present(dev, pref):
            raise
        log.debug("no filter on %s ingress pref %d", dev, pref)


def _filter_present(dev: str, pref: int) -> bool:
    try:
        return bool(attached_program_ids(dev, pref))
    except command.CommandFailed:
        return False  # the device itself is gone
