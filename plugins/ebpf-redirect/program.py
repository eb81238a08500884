"""Loading the from_pod program once per node and pinning it with its maps."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from libcni.errors import BpfFailure, IOFailure

from . import bpfobj, command
from .lock import locked
from .pins import Pins

log = logging.getLogger(__name__)


def ensure_loaded(pins: Pins, obj: Path) -> int:
    """Load obj and pin its program and maps unless already pinned; return the prog id.

    Runs under a flock on the pin root so that concurrent ADDs load it once.
    Maps that are already pinned are reused (`map name N pinned PATH`), so the
    endpoints written by earlier ADDs survive a reload.
    Not handled yet: upgrading an already pinned program to a newer object; remove
    <pinRoot>/progs/from_pod (pods keep the old one until re-attached) to force it.
    """
    _make_dirs(pins)
    with locked(pins.root):
        if pins.program.exists():
            return pinned_program_id(pins.program)
        bpfobj.check_object(obj, bpfobj.FROM_POD)
        _load(pins, obj)
        return pinned_program_id(pins.program)


def pinned_program_id(program_pin: Path) -> int:
    info: dict[str, Any] = command.run_json(
        f"read pinned program {program_pin}",
        ["bpftool", "-j", "prog", "show", "pinned", str(program_pin)],
    )
    if info.get("type") != "sched_cls":
        raise BpfFailure(
            f"failed to use pinned program {program_pin}: its type is "
            f"{info.get('type', 'unknown')}, not sched_cls"
        )
    return int(info["id"])


def _make_dirs(pins: Pins) -> None:
    for directory in (pins.root, pins.progs, pins.maps):
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise IOFailure(
                f"failed to create pin directory {directory}: {exc.strerror}"
            ) from exc


def _load(pins: Pins, obj: Path) -> None:
    """bpftool prog load, pinning new maps in a staging directory first.

    bpftool's `pinmaps DIR` pins every map of the object, reused ones too, and
    fails on a name already pinned in DIR, so it pins into a staging directory,
    new maps are renamed into maps/ and the staging directory is removed.
    """
    # No dot in the name: bpffs reserves names with dots and its lookup fails
    # with EPERM on them (kernel/bpf/inode.c, bpf_lookup).
    staging = pins.root / f"staging-{os.getpid()}"
    reuse = [
        arg
        for name in bpfobj.FROM_POD.map_names
        if pins.map(name).exists()
        for arg in ("map", "name", name, "pinned", str(pins.map(name)))
    ]
    log.debug(
        "loading %s into %s (reusing %d maps)", obj, pins.program, len(reuse) // 5
    )
    try:
        command.run(
            f"load BPF object {obj}",
            [
                "bpftool", "prog", "load", str(obj), str(pins.program),
                "type", "classifier", *reuse, "pinmaps", str(staging),
            ],
        )  # fmt: skip
        for name in bpfobj.FROM_POD.map_names:
            if not pins.map(name).exists():
                os.rename(staging / name, pins.map(name))
    except BaseException:
        pins.program.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
