"""STATUS: whether an ADD could put a pod on the fast path now, and if not, why.

blockers() are what would make ADD fail; kernel_gaps() what would make it fall back
to the stack path: the program type, helpers and attach hook our programs need.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from libcni.errors import CniError

from . import bpffs, bpfobj, command, hook, links
from .config import EbpfConf

TOOLS = ("tc", "bpftool", "ip")
# Every helper bpf/*.bpf.c calls, with the kernel that brought it to tc programs.
HELPERS = {
    "bpf_map_lookup_elem": "3.19",
    "bpf_skb_store_bytes": "4.1",
    "bpf_l3_csum_replace": "4.1",
    "bpf_skb_change_type": "4.8",
    "bpf_skb_pull_data": "4.9",
    "bpf_fib_lookup": "4.18",
    "bpf_redirect_neigh": "5.10",
    "bpf_redirect_peer": "5.10",
}


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


@dataclass(frozen=True)
class Features:
    """What this kernel offers our programs, as probed."""

    sched_cls: bool
    missing_helpers: tuple[str, ...]
    tcx: bool

    def gaps(self, attach_mode: str) -> list[str]:
        """Why the fast path would be missed with this attach mode; empty if not."""
        found = []
        if not self.sched_cls:
            found.append("the kernel has no tc (sched_cls) BPF programs")
        for name in self.missing_helpers:
            found.append(f"the kernel lacks the helper {name} (kernel {HELPERS[name]})")
        if attach_mode == hook.TCX and not self.tcx:
            found.append("attachMode is tcx and the kernel has no tcx (kernel 6.6)")
        return found

    def attach_mode(self, wanted: str) -> str:
        return hook.choose(wanted, self.tcx, None)


def probe() -> Features:
    """Ask the kernel (bpftool feature probe, about 0.3 s) and tcx on loopback.

    For STATUS and inspect only: ADD learns the same by loading and attaching,
    and falls back to the stack path when the kernel refuses.
    """
    found = command.run_json(
        "probe kernel BPF features", ["bpftool", "-j", "feature", "probe", "kernel"]
    )
    types = found.get("program_types", {})
    helpers = set(found.get("helpers", {}).get("sched_cls_available_helpers", []))
    lo = links.find("lo")
    return Features(
        sched_cls=bool(types.get("have_sched_cls_prog_type")),
        missing_helpers=tuple(h for h in HELPERS if h not in helpers),
        tcx=lo is not None and hook.tcx_supported(lo.index),
    )
