"""CHECK's comparison of one attachment's kernel state with what its ADD recorded."""

from __future__ import annotations

from . import links, maps, program, tc
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
    found = _filter_problem(host.name, record.priority, ours)
    found += _endpoint_problems(record, host, pins)
    if record.overlay:
        found += _overlay_problems(record, pins, ours)
    return found


def _filter_problem(dev: str, pref: int, ours: list[tc.Program]) -> list[str]:
    current = tc.at_our_slot(dev, pref)
    if current is None:
        return [f"filter on {dev} ingress at pref {pref} is absent"]
    if not tc.owns(current, ours):
        return [f"filter on {dev} ingress is displaced: {current.describe()}"]
    return []


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
    found = _filter_problem(device.name, record.priority, ours)
    if device.index not in maps.dump_overlays(pins.ovl):
        found.append(f"vxlan device {device.name} is missing from {pins.ovl.name}")
    return found


def _stray_fast_path(record: Record, host: links.Link, pins: Pins) -> list[str]:
    """A pod on the stack path must not be half on the fast path."""
    found = []
    ours = program.pinned_programs_quietly(pins)
    current = tc.at_our_slot(host.name, record.priority)
    if current is not None and tc.owns(current, ours):
        found.append(f"stack-path pod has our filter on {host.name}")
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
