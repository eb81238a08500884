"""STATUS: whether an ADD could put a pod on the fast path now, and if not, why."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from libcni.errors import CniError

from . import bpffs, bpfobj
from .config import EbpfConf

TOOLS = ("tc", "bpftool", "ip")


def blockers(conf: EbpfConf) -> list[str]:
    """Why an ADD would fail now: missing tools, objects or bpffs; empty when none."""
    found = [f"{tool} not found in PATH" for tool in TOOLS if not shutil.which(tool)]
    for spec in bpfobj.OBJECTS:
        try:
            bpfobj.check_object(conf.object_dir / spec.file_name, spec)
        except CniError as exc:
            found.append(exc.msg)
    why = bpffs_problem(conf.pin_root)
    if why:
        found.append(why)
    return found


def bpffs_problem(pin_root: Path) -> str:
    """Empty when pin_root is on a bpffs, or ADD could mount one there."""
    try:
        if bpffs.is_on_bpffs(pin_root):
            return ""
    except CniError as exc:
        return exc.msg
    target = bpffs.mount_target(pin_root)
    prefix = (
        f"pinRoot {pin_root} is not on a bpffs and one cannot be mounted at {target}"
    )
    if not shutil.which("mount"):
        return f"{prefix}: mount not found in PATH"
    if not _kernel_has_bpffs():
        return f"{prefix}: the kernel has no bpf filesystem"
    if os.geteuid() != 0:
        return f"{prefix}: not running as root"
    existing = bpffs.nearest_existing(target)
    if not existing.is_dir():
        return f"{prefix}: {existing} is not a directory"
    return ""


def _kernel_has_bpffs() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["bpf"] for line in f)
    except OSError:
        return True  # no /proc: let the mount itself tell
