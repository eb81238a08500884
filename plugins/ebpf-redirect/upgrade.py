"""Replacing an older pin layout with the current one while its pods keep running.

An upgrade that changes a map's shape bumps pins.LAYOUT_VERSION. The first ADD after
it loads the new programs with new maps, fills them from the records in stateDir
(and from the old endpoint map when its entries have our shape), swaps the program
of every pod's filter or tcx link and of the overlay's in place, and only then
removes the old pins. Until its hook is swapped a pod runs the old program on the
old maps, which stay alive while a program uses them, so no pod loses its path
meanwhile.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from libcni.errors import BpfFailure, CniError

from . import hook, links, maps, program, tc
from .bpfobj import FROM_OVERLAY, FROM_POD, OBJECTS
from .config import EbpfConf
from .lock import locked
from .pins import ENDPOINT_MAPS, MAP_SHAPES, STALE_PREFIX, Pins, older_layouts
from .state import Record, records_of_every_network

log = logging.getLogger(__name__)


def ensure_current(conf: EbpfConf, pins: Pins) -> None:
    """Migrate every older layout under the pin root to `pins`; cheap when none."""
    if not _needs_work(pins):
        return
    program.make_dirs(pins)
    with locked(pins.root):
        _set_aside_misshapen(pins)
        olds = older_layouts(pins.root)
        if olds:
            migrate(conf, pins, olds)


def _needs_work(pins: Pins) -> bool:
    if older_layouts(pins.root):
        return True
    # Maps left without their programs (a crash, or another tool) are reused by the
    # next load only if their shape is ours.
    return not all(pins.prog(spec).exists() for spec in OBJECTS) and any(
        pins.map(name).exists() for name in MAP_SHAPES
    )


def _set_aside_misshapen(pins: Pins) -> None:
    """Move the current layout aside when one of its maps has the wrong shape:
    loading would fail on it for every ADD. It is migrated like an older one."""
    for name, shape in MAP_SHAPES.items():
        pin = pins.map(name)
        if not pin.exists() or program.map_shape(pin) == shape:
            continue
        aside = pins.root / f"{STALE_PREFIX}{pins.base.name}"
        log.warning(
            "pinned map %s has key/value sizes %s, want %s: moving %s to %s and "
            "loading afresh",
            pin,
            program.map_shape(pin),
            shape,
            pins.base,
            aside,
        )
        if aside.exists():
            _remove(Pins(aside, 1), pins.root)
        pins.base.rename(aside)
        program.make_dirs(pins)
        return


def migrate(conf: EbpfConf, pins: Pins, olds: list[Pins]) -> None:
    """Load the current layout, move every pod and overlay device onto it, and
    remove the older layouts. Safe to repeat after a crash half-way."""
    old_programs = [p for old in olds for p in program.pinned_programs_quietly(old)]
    new = {
        spec: program.ensure_loaded_locked(pins, conf.object_dir / spec.file_name, spec)
        for spec in OBJECTS
    }
    for old in olds:
        _copy_endpoints(old, pins)
    records = [r for r in records_of_every_network(conf.state_dir) if r.mode == "fast"]
    moved = 0
    for record in records:
        moved += _move_pod(record, pins, new[FROM_POD], old_programs)
    for device, priority in sorted({(r.overlay, r.priority) for r in records}):
        if device:
            _move_overlay(device, priority, pins, new[FROM_OVERLAY], old_programs)
    for old in olds:
        _remove(old, pins.root)
    log.info(
        "migrated pins under %s to layout v%d: %d pod filters re-attached, removed %s",
        pins.root,
        pins.version,
        moved,
        ", ".join(str(old.base) for old in olds),
    )


def _copy_endpoints(old: Pins, pins: Pins) -> None:
    """Entries of pods not in our records (another stateDir on this pin root), from
    each endpoint map the old layout has (layouts before v3: mycni_ep4 only)."""
    for name in ENDPOINT_MAPS.values():
        pin = old.map(name)
        try:
            if not pin.exists() or program.map_shape(pin) != MAP_SHAPES[name]:
                continue
            for ip, endpoint in maps.dump_endpoints(pin).items():
                if links.name_of(endpoint.ifindex):
                    maps.put_endpoint(pins.endpoint_map(ip), ip, endpoint)
        except CniError as exc:
            log.warning(
                "cannot copy endpoints from %s: %s; using records only", pin, exc.msg
            )


def _move_pod(
    record: Record, pins: Pins, new: tc.Program, old: list[tc.Program]
) -> int:
    host = links.find(record.host_veth)
    if host is None or host.index != record.host_ifindex:
        return 0  # the pod is gone; its DEL finds nothing to undo
    endpoint = maps.Endpoint(host.index, maps.parse_mac(record.pod_mac), host.mac)
    # A record of layout v2 or before lists the pod's IPv4 addresses only: its
    # IPv6 ones stay on the stack path until the pod is re-created.
    for ip in record.ips:
        maps.put_endpoint(pins.endpoint_map(ip), ip, endpoint)
    return int(hook.reattach(pins.root, host, record.priority, pins.program, new, old))


def _move_overlay(
    name: str, priority: int, pins: Pins, new: tc.Program, old: list[tc.Program]
) -> None:
    device = links.find(name)
    if device is None:
        return
    maps.put_overlay(pins.ovl, device.index)
    hook.reattach(pins.root, device, priority, pins.overlay_program, new, old)


def _remove(old: Pins, pin_root: Path) -> None:
    """Unpin an older layout; a program still attached somewhere stays loaded
    (with its maps) until its last filter goes."""
    directories = [old.progs, old.maps]
    if old.base != pin_root:
        directories.append(old.base)  # v<N>/ or stale-*/, not the pin root itself
    for directory in directories:
        try:
            shutil.rmtree(directory)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BpfFailure(
                f"failed to remove old pins {directory}: {exc.strerror}"
            ) from exc
