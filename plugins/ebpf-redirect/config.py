"""The plugin's configuration: pin root, objects, tc priority, overlay, mode, state."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libcni import fields
from libcni.errors import InvalidConfig, shown

DEFAULT_PIN_ROOT = Path("/sys/fs/bpf/mycni")
DEFAULT_STATE_DIR = Path("/var/lib/cni/mycni-ebpf")
INSTALLED_BPF_DIR = Path("/opt/mycni/bpf")
DEFAULT_PRIORITY = 1
ATTACH_MODES = ("auto", "tcx", "tc")


def default_object_dir() -> Path:
    """Where the .bpf.o files are, relative to a pyinstaller bundle when frozen.

    The executable is <prefix>/lib/mycni/ebpf-redirect (installed) or
    build/dist/mycni/ebpf-redirect (build tree); parents[2] is then /opt/mycni or
    build, and both keep the objects in bpf/ below it.
    """
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parents[2] / "bpf"
    return INSTALLED_BPF_DIR


@dataclass(frozen=True)
class EbpfConf:
    network: str
    pin_root: Path
    object_dir: Path
    priority: int
    state_dir: Path
    # None: find the node's `mycni.<vni>` device; "": no overlay program.
    vxlan_device: str | None = None
    fast_path: bool = True
    # "auto" (tcx where the kernel has it, else tc), "tcx" or "tc": hook.py.
    attach_mode: str = "auto"
    # runtimeConfig.bandwidth asks for a rate limit: see plugin.py.
    shaped: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any], teardown: bool = False) -> EbpfConf:
        """teardown: for DEL and GC, which must release a pod whatever the keys
        that only shape an ADD (attachMode, runtimeConfig.bandwidth) say; a typo
        there must not strand every pod of the network."""
        return cls(
            network=str(config.get("name", "")),
            pin_root=fields.absolute_path(config, "pinRoot", DEFAULT_PIN_ROOT),
            object_dir=fields.absolute_path(
                config, "bpfObjectDir", default_object_dir()
            ),
            priority=_priority(config),
            state_dir=fields.absolute_path(config, "stateDir", DEFAULT_STATE_DIR),
            vxlan_device=_vxlan_device(config),
            fast_path=fields.boolean(config, "fastPath", True),
            attach_mode="auto" if teardown else _attach_mode(config),
            shaped=False if teardown else _shaped(config),
        )


def _priority(config: dict[str, Any]) -> int:
    value = config.get("priority", DEFAULT_PRIORITY)
    # tc's pref is 16 bits and 0 asks the kernel to pick one, which we could not
    # find again on DEL.
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1 <= value <= 0xFFFF
    ):
        raise InvalidConfig(f"priority: {shown(value)} is not an integer in 1..65535")
    return value


def _vxlan_device(config: dict[str, Any]) -> str | None:
    value = config.get("vxlanDevice")
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        raise InvalidConfig(f"vxlanDevice: expected a device name, got {shown(value)}")
    return fields.interface_name(value, "vxlanDevice")


def _attach_mode(config: dict[str, Any]) -> str:
    value = config.get("attachMode", "auto")
    if value not in ATTACH_MODES:
        raise InvalidConfig(
            f"attachMode: {shown(value)} is not one of {', '.join(ATTACH_MODES)}"
        )
    return str(value)


def _shaped(config: dict[str, Any]) -> bool:
    """Whether runtimeConfig.bandwidth (the `bandwidth` capability) sets a rate.

    The reference bandwidth plugin shapes a pod on its host veth: its egress on an
    ingress qdisc there, its ingress on the veth's root qdisc. bpf_redirect_peer and
    bpf_redirect_neigh pass neither, so a shaped pod must take the stack path.
    """
    runtime = config.get("runtimeConfig")
    bandwidth = runtime.get("bandwidth") if isinstance(runtime, dict) else None
    if bandwidth is None:
        return False
    if not isinstance(bandwidth, dict):
        raise InvalidConfig(
            f"runtimeConfig.bandwidth: expected an object, got {shown(bandwidth)}"
        )
    rates = ("ingressRate", "egressRate")
    for key in rates:
        value = bandwidth.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidConfig(
                f"runtimeConfig.bandwidth.{key}: {shown(value)} is not a rate in bits/s"
            )
    return any(bandwidth.get(key, 0) > 0 for key in rates)
