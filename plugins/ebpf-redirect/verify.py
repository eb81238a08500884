"""CHECK's comparison of one attachment's kernel state with what its ADD recorded."""

from __future__ import annotations

from . import hook, links, maps, program, tc, tcx
from .pins import Pins
from .state import Record


def differences(record: Record, pins: Pins) -> list[str]:
    """Every way the kernel differs from the record; empty when all is in place."""
    host = links.find(record.host_veth)
    if host is None or host.index != record.host_ifindex:
        return [f"host veth {record.host_veth} (ifindex {record.host_ifindex}) is gone"]
    if record.mode != "fast":
        return _stray_fast_path(record, host, pins)

    ours = program.pinned_programs_quietly(pins)
    if not pins.program.exists():
        return [f"program pin {pins.program} is missing"]
    found = _hook_problems(pins, host, record.priority, ours, record.attach)
    found += _endpoint_problems(record, host, pins)
    if record.overlay:
        found += _overlay_problems(record, pins, ours)
    return found


def _hook_problems(
    pins: Pins, dev: links.Link, pref: int, ours: list[tc.Program], mode: str
) -> list[str]:
    try:
        return hook.problems(pins.root, dev, pref, ours, mode)
    except tcx.TcxError as exc:
        return [exc.msg]


def _endpoint_problems(record: Record, host: links.Link, pins: Pins) -> list[str]:
    want = maps.Endpoint(host.index, maps.parse_mac(record.pod_mac), host.mac)
    have = maps.dump_endpoint_maps(pins.endpoint_maps)
    found = []
    for ip in record.ips:
        entry = have.get(ip)
        if entry is None:
            found.append(f"endpoint {ip} is missing from {pins.endpoint_map(ip).name}")
        elif entry != want:
            found.append(f"endpoint {ip} is wrong: {_show(entry)}, want {_show(want)}")
    return found


def _overlay_problems(record: Record, pins: Pins, ours: list[tc.Program]) -> list[str]:
    device = links.find(record.overlay)
    if device is None:
        return [f"vxlan device {record.overlay} is gone"]
    # The overlay keeps whichever mode its first ADD gave it.
    mode = hook.current_mode(pins.root, device, record.priority, ours) or record.attach
    found = _hook_problems(pins, device, record.priority, ours, mode)
    if device.index not in maps.dump_overlays(pins.ovl):
        found.append(f"vxlan device {device.name} is missing from {pins.ovl.name}")
    return found


def _stray_fast_path(record: Record, host: links.Link, pins: Pins) -> list[str]:
    """A pod on the stack path must not be half on the fast path."""
    found = []
    ours = program.pinned_programs_quietly(pins)
    mode = hook.current_mode(pins.root, host, record.priority, ours)
    if mode is not None:
        found.append(f"stack-path pod has our program on {host.name} ({mode})")
    have = maps.dump_endpoint_maps(pins.endpoint_maps)
    for ip in record.ips:
        entry = have.get(ip)
        if entry is not None and entry.ifindex == host.index:
            name = pins.endpoint_map(ip).name
            found.append(f"stack-path pod has endpoint {ip} in {name}")
    return found


def _show(ep: maps.Endpoint) -> str:
    def mac(raw: bytes) -> str:
        return ":".join(f"{b:02x}" for b in raw)

    return f"ifindex {ep.ifindex} pod {mac(ep.pod_mac)} host {mac(ep.host_mac)}"
