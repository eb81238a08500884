"""Loading our programs once per node and pinning them with their shared maps."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from libcni.errors import BpfFailure, IOFailure

from . import bpfobj, command, tcx
from .bpfobj import FROM_POD, ObjectSpec
from .lock import locked
from .pins import Pins
from .tc import Program

log = logging.getLogger(__name__)

BPF_PROG_TYPE_SCHED_CLS = 3  # enum bpf_prog_type, include/uapi/linux/bpf.h


def ensure_loaded(pins: Pins, obj: Path, spec: ObjectSpec = FROM_POD) -> Program:
    """Load obj and pin its program and maps unless already pinned; return it.

    Runs under a flock on the pin root so that concurrent ADDs load it once.
    Maps that are already pinned are reused (`map name N pinned PATH`), so the
    endpoints written by earlier ADDs survive a reload, and both programs share
    one endpoint map and one counter map.
    Older pin layouts are migrated first (upgrade.py), by the caller.
    """
    make_dirs(pins)
    with locked(pins.root):
        return ensure_loaded_locked(pins, obj, spec)


def ensure_loaded_locked(pins: Pins, obj: Path, spec: ObjectSpec) -> Program:
    """ensure_loaded for a caller that holds the pin root's lock already."""
    pin = pins.prog(spec)
    if pin.exists():
        return pinned_program(pin)
    bpfobj.check_object(obj, spec)
    make_dirs(pins)
    _load(pins, obj, spec)
    return pinned_program(pin)


def pinned_program(program_pin: Path) -> Program:
    """Id and tag of a pinned program; raises tcx.TcxError when it cannot be read."""
    info = tcx.program_info(program_pin)
    if info.type != BPF_PROG_TYPE_SCHED_CLS:
        raise BpfFailure(
            f"failed to use pinned program {program_pin}: its type is "
            f"{info.type}, not sched_cls ({BPF_PROG_TYPE_SCHED_CLS})"
        )
    return Program(info.id, info.tag)


def map_shape(map_pin: Path) -> tuple[int, int]:
    """(key size, value size) of a pinned map."""
    info: dict[str, Any] = command.run_json(
        f"read pinned map {map_pin}",
        ["bpftool", "-j", "map", "show", "pinned", str(map_pin)],
    )
    return int(info.get("bytes_key", 0)), int(info.get("bytes_value", 0))


def pinned_programs_quietly(pins: Pins) -> list[Program]:
    """Every program pinned under the pin root that can be read, for ownership."""
    found = []
    for spec in bpfobj.OBJECTS:
        if not pins.prog(spec).exists():
            continue
        try:
            found.append(pinned_program(pins.prog(spec)))
        except BpfFailure as exc:
            log.warning("cannot read pinned program %s: %s", spec.name, exc.msg)
    return found


def make_dirs(pins: Pins) -> None:
    for directory in (pins.root, pins.base, pins.progs, pins.maps):
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise IOFailure(
                f"failed to create pin directory {directory}: {exc.strerror}"
            ) from exc


def _load(pins: Pins, obj: Path, spec: ObjectSpec) -> None:
    """bpftool prog load, pinning new maps in a staging directory first.

    bpftool's `pinmaps DIR` pins every map of the object, reused ones too, and
    fails on a name already pinned in DIR, so it pins into a staging directory,
    new maps are renamed into maps/ and the staging directory is removed.
    """
    # No dot in the name: bpffs reserves names with dots and its lookup fails
    # with EPERM on them (kernel/bpf/inode.c, bpf_lookup).
    staging = pins.root / f"staging-{os.getpid()}"
    pin = pins.prog(spec)
    reuse = [
        arg
        for name in spec.map_names
        if pins.map(name).exists()
        for arg in ("map", "name", name, "pinned", str(pins.map(name)))
    ]
    log.debug("loading %s into %s (reusing %d maps)", obj, pin, len(reuse) // 5)
    try:
        command.run(
            f"load BPF object {obj}",
            [
                "bpftool", "prog", "load", str(obj), str(pin),
                "type", "classifier", *reuse, "pinmaps", str(staging),
            ],
        )  # fmt: skip
        for name in spec.map_names:
            if not pins.map(name).exists():
                os.rename(staging / name, pins.map(name))
    except BaseException:
        pin.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
