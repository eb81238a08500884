"""`ebpf-redirect inspect`: the node's endpoints, attach modes and counters, and the
path of one packet between two pod addresses. Run it in the node's network namespace.

A table by default, JSON with --json; exit status 0, 1 when explain's test run
disagrees with the maps or something could not be read, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from libcni.errors import CniError

from . import explain, hook, links, maps, program, readiness
from .config import DEFAULT_PIN_ROOT, DEFAULT_STATE_DIR
from .pins import Pins
from .state import Record, records_of_every_network


def main(
    argv: Sequence[str] | None = None,
    prog: str = "ebpf-redirect inspect",
    out: TextIO | None = None,
) -> int:
    out = sys.stdout if out is None else out
    args = build_parser(prog).parse_args(argv)
    pins = Pins(Path(args.pin_root))
    records = records_of_every_network(Path(args.state_dir))
    try:
        code: int = args.run(pins, records, args, out)
        return code
    except CniError as exc:
        print(exc.msg, file=sys.stderr)
        return 1


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Inspect the ebpf-redirect fast path of this node."
    )
    parser.add_argument(
        "--pin-root",
        default=str(DEFAULT_PIN_ROOT),
        help=f"the plugin's pinRoot (default {DEFAULT_PIN_ROOT})",
    )
    parser.add_argument(
        "--state-dir",
        default=str(DEFAULT_STATE_DIR),
        help=f"the plugin's stateDir (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    endpoints = sub.add_parser("endpoints", help="pods, their veths, modes, entries")
    endpoints.set_defaults(run=run_endpoints)
    counters = sub.add_parser("counters", help="the per-path counters, summed")
    counters.set_defaults(run=run_counters)
    features = sub.add_parser(
        "features", help="what the kernel offers: program type, helpers, tcx"
    )
    features.set_defaults(run=run_features)
    explainer = sub.add_parser("explain", help="the path of a packet SRC -> DST")
    explainer.add_argument("src", metavar="SRC")
    explainer.add_argument("dst", metavar="DST")
    explainer.set_defaults(run=run_explain)
    for child in (endpoints, counters, features, explainer):
        child.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    return parser  # fmt: skip


def run_endpoints(
    pins: Pins, records: list[Record], args: argparse.Namespace, out: TextIO
) -> int:
    entries = maps.dump_endpoint_maps(pins.endpoint_maps)
    ours = program.pinned_programs_quietly(pins)
    rows: list[dict[str, Any]] = []
    for record in sorted(records, key=lambda r: (r.host_veth, r.container_id)):
        host = links.find(record.host_veth)
        alive = host is not None and host.index == record.host_ifindex
        hooked = hook.describe(pins.root, host, record.priority, ours) if (
            alive and host is not None) else "absent"  # fmt: skip
        for ip in record.ips or (None,):
            entry = entries.pop(ip, None) if ip is not None else None
            rows.append({
                "address": str(ip) if ip else "",
                "container": record.container_id,
                "ifname": record.ifname,
                "hostVeth": record.host_veth,
                "ifindex": record.host_ifindex,
                "vethPresent": alive,
                "mode": record.mode,
                "reason": record.reason,
                "attach": record.attach if record.mode == "fast" else "",
                "overlay": record.overlay,
                "hook": hooked,
                "mapEntry": _entry_state(entry, record.host_ifindex),
            })  # fmt: skip
    # Entries no record explains, IPv4 first (addresses of two families do not
    # compare).
    for ip, entry in sorted(entries.items(), key=lambda e: (e[0].version, e[0])):
        rows.append({
            "address": str(ip), "container": "", "ifname": "", "hostVeth":
            links.name_of(entry.ifindex) or "", "ifindex": entry.ifindex,
            "vethPresent": links.name_of(entry.ifindex) is not None, "mode": "",
            "reason": "no record", "attach": "", "overlay": "", "hook": "",
            "mapEntry": "orphan",
        })  # fmt: skip
    if args.json:
        json.dump({"layout": pins.version, "pinRoot": str(pins.root),
                   "endpoints": rows}, out, indent=2)  # fmt: skip
        out.write("\n")
        return 0
    header = ("ADDRESS", "HOST VETH", "IFINDEX", "MODE", "ATTACH", "HOOK", "ENTRY",
              "CONTAINER")  # fmt: skip
    keys = ("address", "hostVeth", "ifindex", "mode", "attach", "hook", "mapEntry",
            "container")  # fmt: skip
    print_table(header, [[str(row[k]) for k in keys] for row in rows], out)
    return 0


def _entry_state(entry: maps.Endpoint | None, ifindex: int) -> str:
    if entry is None:
        return "absent"
    return "ok" if entry.ifindex == ifindex else f"points at ifindex {entry.ifindex}"


def run_counters(
    pins: Pins, records: list[Record], args: argparse.Namespace, out: TextIO
) -> int:
    stats = maps.read_stats(pins.stats) if pins.stats.exists() else {}
    rows = {stat.name: value for stat, value in stats.items()}
    if args.json:
        json.dump({"pinRoot": str(pins.root), "counters": rows}, out, indent=2)
        out.write("\n")
        return 0
    print_table(("COUNTER", "PACKETS"), [[k, str(v)] for k, v in rows.items()], out)
    return 0


def run_features(
    pins: Pins, records: list[Record], args: argparse.Namespace, out: TextIO
) -> int:
    found = readiness.probe()
    rows = {
        "sched_cls programs": "yes" if found.sched_cls else "NO",
        **{
            name: "MISSING" if name in found.missing_helpers else "yes"
            for name in readiness.HELPERS
        },
        "tcx (kernel 6.6)": "yes" if found.tcx else "no: clsact filters instead",
        "attachMode auto picks": found.attach_mode(hook.AUTO),
    }
    gaps = found.gaps(hook.AUTO)
    if args.json:
        json.dump({"features": rows, "fastPath": not gaps, "gaps": gaps}, out,
                  indent=2)  # fmt: skip
        out.write("\n")
        return 0
    print_table(("FEATURE", "AVAILABLE"), [[k, v] for k, v in rows.items()], out)
    out.write(f"fast path: {'available' if not gaps else '; '.join(gaps)}\n")
    return 0


def run_explain(
    pins: Pins, records: list[Record], args: argparse.Namespace, out: TextIO
) -> int:
    src = explain.parse_address(args.src, "SRC")
    dst = explain.parse_address(args.dst, "DST")
    found = explain.explain(pins, records, src, dst)
    if args.json:
        json.dump(found.to_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(f"{src} -> {dst}\n")
        width = max(len(name) for name, _ in found.steps) + 1
        for name, text in found.steps:
            out.write(f"  {name + ':':<{width}} {text}\n")
        out.write(f"  {'verdict:':<{width}} "
                  f"{'agrees' if found.agrees else 'DISAGREES'}\n")  # fmt: skip
    return 0 if found.agrees else 1


def print_table(header: Sequence[str], rows: list[list[str]], out: TextIO) -> None:
    lines: list[Sequence[str]] = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        cells = (c.ljust(w) for c, w in zip(line, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")
