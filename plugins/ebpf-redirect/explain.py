"""The path one packet from pod SRC to DST takes on this node, from the maps, and the
attached program's own verdict on a crafted frame (BPF_PROG_TEST_RUN)."""

from __future__ import annotations

import json
import struct
import tempfile
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from libcni import types
from libcni.errors import CniError, InvalidConfig
from libcni.types import IPAddress

from . import command, links, maps, program, stack_rules, tc, tcx
from . import hook as hooks
from .counters import Stat
from .pins import Pins
from .state import Record

TC_ACT_UNSPEC, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = -1, 0, 2, 7
VERDICTS = {
    TC_ACT_UNSPEC: "TC_ACT_UNSPEC (on to the next filter, then the host stack)",
    TC_ACT_OK: "TC_ACT_OK (on to the host stack)",
    TC_ACT_SHOT: "TC_ACT_SHOT (dropped)",
    TC_ACT_REDIRECT: "TC_ACT_REDIRECT",
}
# struct __sk_buff (include/uapi/linux/bpf.h): ingress_ifindex and ifindex, the
# only fields PROG_TEST_RUN takes besides mark/priority/cb/tstamp/gso ones
# (net/bpf/test_run.c, convert___skb_to_skb); 192 bytes on kernels 5.16+.
SKB_CTX_SIZE = 192
SKB_INGRESS_IFINDEX_OFF = 36
TEST_TTL = 64
FOREIGN_MAC = bytes.fromhex("020000000001")  # the sender on another node


@dataclass(frozen=True)
class Explanation:
    src: IPAddress
    dst: IPAddress
    steps: list[tuple[str, str]] = field(default_factory=list)
    expected_verdict: int | None = None  # None: no program of ours on the path
    expected_counter: str = ""
    run_verdict: int | None = None
    run_counters: tuple[str, ...] = ()
    agrees: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "src": str(self.src),
            "dst": str(self.dst),
            "steps": dict(self.steps),
            "expected": {
                "verdict": self.expected_verdict,
                "counter": self.expected_counter,
            },
            "testRun": {
                "verdict": self.run_verdict,
                "counters": list(self.run_counters),
            },
            "agrees": self.agrees,
        }


@dataclass(frozen=True)
class _Hook:
    """Where the packet meets our program: a host veth or the VXLAN device."""

    link: links.Link
    src_mac: bytes
    local_source: bool
    fast: bool = True  # whether the record says our program should be there


def explain(
    pins: Pins, records: list[Record], src: IPAddress, dst: IPAddress
) -> Explanation:
    if src.version != dst.version:
        raise InvalidConfig(f"DST: {dst} is not of the family of SRC {src}")
    steps: list[tuple[str, str]] = []
    endpoints = maps.dump_endpoint_maps(pins.endpoint_maps)
    overlays = maps.dump_overlays(pins.ovl)
    hook = _hook(records, overlays, src, steps)
    if hook is None:
        return Explanation(src, dst, steps, agrees=True)

    ours = program.pinned_programs_quietly(pins)
    prog, where = _attached(pins, hook.link, ours)
    if prog is None:
        steps.append(("hook", f"{hook.link.name} ingress has no program of ours: "
                      "the host stack handles every packet"))  # fmt: skip
        return Explanation(src, dst, steps, agrees=not hook.fast)
    steps.append(("hook", f"{hook.link.name} ingress {where}: "
                  f"program id {prog.id}"))  # fmt: skip

    verdict, counter = _expect(pins, hook, endpoints, overlays, src, dst, steps)
    run, moved = _test_run(pins, prog, _frame(hook, src, dst), hook.link.index)
    steps.append(("test run", f"{VERDICTS.get(run, run)}, counted "
                  f"{', '.join(moved) or 'nothing'}"))  # fmt: skip
    agrees = run == verdict and counter in moved
    return Explanation(src, dst, steps, verdict, counter, run, moved, agrees)


def _hook(
    records: list[Record],
    overlays: set[int],
    src: IPAddress,
    steps: list[tuple[str, str]],
) -> _Hook | None:
    record = next((r for r in records if src in r.ips), None)
    if record is not None:
        link = links.find(record.host_veth)
        if link is None or link.index != record.host_ifindex:
            raise InvalidConfig(f"{src}: host veth {record.host_veth} of "
                                f"{record.container_id} is gone")  # fmt: skip
        steps.append(("source", f"pod {src} of {record.container_id}/{record.ifname} "
                      f"on {link.name} (ifindex {link.index}), mode {record.mode}"
                      + (f": {record.reason}" if record.reason else "")))  # fmt: skip
        pod_mac = maps.parse_mac(record.pod_mac)
        return _Hook(link, pod_mac, local_source=True, fast=record.mode == "fast")
    names = sorted(n for n in (links.name_of(i) for i in overlays) if n)
    if not names:
        steps.append(("source", f"{src} is no pod of this node and no VXLAN device "
                      "carries our program: the host stack handles it"))  # fmt: skip
        return None
    link = links.find(names[0])
    if link is None:
        return None
    steps.append(("source", f"{src} is not on this node: its packets arrive "
                  f"decapsulated on {link.name} (ifindex {link.index})"))  # fmt: skip
    return _Hook(link, FOREIGN_MAC, local_source=False)


def _expect(
    pins: Pins,
    hook: _Hook,
    endpoints: dict[IPAddress, maps.Endpoint],
    overlays: set[int],
    src: IPAddress,
    dst: IPAddress,
    steps: list[tuple[str, str]],
) -> tuple[int, str]:
    """The verdict and counter the programs' stack rules, the maps and the FIB call
    for. For IPv6 the counter is the *_V6 one, which only an IPv6 frame on that path
    moves."""
    v6 = dst.version == 6
    passed = Stat.PASSED_V6 if v6 else Stat.PASSED
    map_name = pins.endpoint_map(dst).name
    entry = endpoints.get(dst)
    name = ""
    if entry is not None:
        name = links.name_of(entry.ifindex) or "a missing link"
        steps.append(("destination", f"{map_name}[{dst}] = ifindex {entry.ifindex} "
                      f"({name}), pod MAC {_mac(entry.pod_mac)}, "
                      f"gateway MAC {_mac(entry.host_mac)}"))  # fmt: skip
    else:
        steps.append(("destination", f"{dst} is not in {map_name}: "
                      "no pod of this node"))  # fmt: skip

    rule = stack_rules.rule_for(src, dst)
    if rule is not None:
        steps.append(("expected", f"{rule.describe(src, dst)}: left to the host "
                      f"stack, {VERDICTS[TC_ACT_UNSPEC]}, counted "
                      f"{passed.name}"))  # fmt: skip
        return TC_ACT_UNSPEC, passed.name
    if entry is not None:
        if hook.local_source:
            stat = Stat.REDIRECTED_V6 if v6 else Stat.REDIRECTED
        else:
            stat = (Stat.REDIRECTED_OVERLAY_IN_V6 if v6
                    else Stat.REDIRECTED_OVERLAY_IN)  # fmt: skip
        steps.append(("expected", f"bpf_redirect_peer into the pod behind {name}: "
                      f"{VERDICTS[TC_ACT_REDIRECT]}, counted {stat.name}"))  # fmt: skip
        return TC_ACT_REDIRECT, stat.name
    device = _route_device(dst) if hook.local_source else None
    if device is not None and device.index in overlays:
        stat = Stat.REDIRECTED_NEIGH_V6 if v6 else Stat.REDIRECTED_NEIGH
        steps.append(("expected", f"FIB: via {device.name}, in mycni_ovl: "
                      f"bpf_redirect_neigh, {VERDICTS[TC_ACT_REDIRECT]}, counted "
                      f"{stat.name}"))  # fmt: skip
        return TC_ACT_REDIRECT, stat.name
    via = f"FIB: via {device.name}, not an overlay" if device else "not for the overlay"
    steps.append(("expected", f"{via}: {VERDICTS[TC_ACT_UNSPEC]}, counted "
                  f"{passed.name}"))  # fmt: skip
    return TC_ACT_UNSPEC, passed.name


def _attached(
    pins: Pins, link: links.Link, ours: list[tc.Program]
) -> tuple[tc.Program | None, str]:
    """Our program on link's ingress and how it hangs there: a tcx link, or a
    filter at any pref (explain does not know the network's priority)."""
    found = tcx.info(hooks.link_pin(pins.root, link.index))
    if found is not None and found.attached:
        prog = next((p for p in ours if p.id == found.prog_id), None)
        return prog, f"tcx link {found.id}"
    filt = next((f for f in tc.ingress_filters(link.name) if tc.owns(f, ours)), None)
    if filt is None:
        return None, ""
    return filt.prog, f"pref {filt.pref}"


def _route_device(dst: IPAddress) -> links.Link | None:
    try:
        routes = command.run_json(f"look up the route to {dst}",
                                  ["ip", "-j", "route", "get", str(dst)])  # fmt: skip
    except CniError:
        return None
    dev = routes[0].get("dev") if routes else None
    return links.find(dev) if isinstance(dev, str) else None


def _test_run(
    pins: Pins, prog: tc.Program, frame: bytes, ifindex: int
) -> tuple[int, tuple[str, ...]]:
    """Run the attached program once on frame as if it arrived on ifindex; return
    its verdict and the counters it moved (a test run counts like a packet)."""
    ctx = bytearray(SKB_CTX_SIZE)
    struct.pack_into("=II", ctx, SKB_INGRESS_IFINDEX_OFF, ifindex, ifindex)
    before = maps.read_stats(pins.stats)
    with tempfile.TemporaryDirectory(prefix="mycni-explain-") as tmp:
        data_in, data_out, ctx_in = (Path(tmp) / n for n in ("in", "out", "ctx"))
        data_in.write_bytes(frame)
        ctx_in.write_bytes(bytes(ctx))
        out = command.run(
            f"run program {prog.id} on a crafted frame",
            ["bpftool", "-j", "prog", "run", "id", str(prog.id),
             "data_in", str(data_in), "data_out", str(data_out),
             "ctx_in", str(ctx_in), "repeat", "1"],
        )  # fmt: skip
    after = maps.read_stats(pins.stats)
    moved = tuple(s.name for s in Stat if after[s] > before[s])
    return signed_verdict(int(json.loads(out)["retval"])), moved


def signed_verdict(retval: int) -> int:
    """bpftool prints the program's return value as an unsigned 32-bit number:
    TC_ACT_UNSPEC (-1) comes out as 4294967295."""
    return retval - (1 << 32) if retval >= 1 << 31 else retval


def _frame(hook: _Hook, src: IPAddress, dst: IPAddress) -> bytes:
    """Ethernet + IPv4 or IPv6 (protocol UDP, 8 bytes of payload)."""
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        return _frame4(hook, src, dst)
    eth = hook.link.mac + hook.src_mac + b"\x86\xdd"
    payload = bytes(8)
    # Version 6, traffic class and flow label 0; next header UDP (17).
    header = struct.pack("!IHBB16s16s", 6 << 28, len(payload), 17, TEST_TTL,
                         src.packed, dst.packed)  # fmt: skip
    return eth + header + payload


def _frame4(hook: _Hook, src: IPv4Address, dst: IPv4Address) -> bytes:
    """Ethernet + IPv4 (protocol UDP, 8 bytes of payload) with a valid checksum."""
    payload = bytes(8)
    header = bytearray(struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, TEST_TTL, 17, 0,
        src.packed, dst.packed,
    ))  # fmt: skip
    header[10:12] = struct.pack("!H", _checksum(bytes(header)))
    eth = hook.link.mac + hook.src_mac + b"\x08\x00"
    return eth + bytes(header) + payload


def _checksum(header: bytes) -> int:
    words: tuple[int, ...] = struct.unpack(f"!{len(header) // 2}H", header)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_address(text: str, what: str) -> IPAddress:
    """A pod address as ADD takes them (libcni.types), so no zone index either."""
    return types.parse_address(text, what)
