"""`python -m tests.bench`: run the parts asked for, write the results directory and
print the Markdown table. Run as root after `make build driver`."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

from tests import testbed as tb
from tests.bench import control, datapath, ipam, report, rules, setups

PARTS = ("datapath", "control", "ipam")
CONFIGS = ("reference", "mycni", "mycni-ebpf", "native", "veth")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated subset of %(default)s"
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=3,
        help="datapath repetitions and burst rounds (default %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="length of each traffic measurement (default %(default)s)",
    )
    parser.add_argument(
        "--rules",
        type=int,
        default=2000,
        help="kube-proxy-like nat rules per node (default %(default)s)",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help="datapaths to build (default %(default)s)",
    )
    parser.add_argument(
        "--pods",
        type=int,
        default=50,
        help="serial ADDs per chain (default %(default)s)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=16,
        help="concurrent ADDs in a burst (default %(default)s)",
    )
    parser.add_argument(
        "--burst-rounds",
        type=int,
        default=None,
        help="bursts per chain (default: --reps)",
    )
    parser.add_argument(
        "--rss-pods",
        type=int,
        default=3,
        help="ADDs per chain under /usr/bin/time (default %(default)s)",
    )
    parser.add_argument(
        "--breakdown-reps",
        type=int,
        default=5,
        help="ADDs per chain timed piece by piece (default %(default)s)",
    )
    parser.add_argument(
        "--ipam-reps",
        type=int,
        default=5,
        help="ADDs per lease count and plugin (default %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results directory (default build/bench/<date-time>)",
    )
    args = parser.parse_args(argv)
    if args.burst_rounds is None:
        args.burst_rounds = args.reps
    return args


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every testbed and server is removed."""

    def interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def meta(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "-C", str(tb.REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "load_before": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "commit": commit,
        "command": " ".join(["python -m tests.bench", *argv]),
        "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
        },
        "mtu": {"overlay": setups.OVERLAY_MTU, "native": setups.UNDERLAY_MTU},
    }


def run_datapath(args: argparse.Namespace) -> dict[str, Any]:
    names = [c for c in args.configs.split(",") if c]
    with contextlib.ExitStack() as stack:
        progress(f"datapath: building {', '.join(names)}")
        built = setups.build_all(names, stack)
        datapath.check_reachable(built)
        samples, per_node = datapath.measure(
            built, args.reps, args.seconds, rules.services_for(args.rules), progress
        )
    summaries = report.summarize_datapath(samples)
    return {
        "configs": names,
        "rules_per_node": per_node,
        "samples": samples,
        "summary": {k: v.to_dict() for k, v in summaries.items()},
        "ratios": report.datapath_ratios(summaries),
    }


def run_control(args: argparse.Namespace) -> dict[str, Any]:
    names = list(control.CHAINS)
    with contextlib.ExitStack() as stack:
        chains = control.build_chains(names, stack)
        progress(f"control: {args.pods} serial ADDs per chain")
        samples = [{"mode": "serial", **s} for s in control.serial(chains, args.pods)]
        progress(f"control: {args.burst_rounds} burst(s) of {args.burst}")
        samples += [
            {"mode": "burst", **s}
            for s in control.burst(chains, args.burst, args.burst_rounds)
        ]
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mycni-bench-"))
        wrappers = control.Wrappers.create(Path(tmp))
        progress("control: peak RSS and the ADD breakdown")
        rss = control.peak_rss(chains, wrappers, args.rss_pods)
        breakdown = [
            row
            for chain in chains
            for row in control.breakdown(chain, wrappers, args.breakdown_reps)
        ]
        overhead = control.wrapper_overhead(wrappers, 10)
    startup = control.startup_costs(args.breakdown_reps)
    summaries = report.summarize_control(samples)
    return {
        "chains": names,
        "samples": samples,
        "summary": {k: v.to_dict() for k, v in summaries.items()},
        "failures": report.failures(samples),
        "rss_calls": rss,
        "rss_kib": report.summarize_rss(rss),
        "breakdown_reps": args.breakdown_reps,
        "breakdown": breakdown,
        "breakdown_median": report.summarize_breakdown(breakdown),
        "wrapper_overhead_s": overhead,
        "startup": startup,
    }


def run_ipam(args: argparse.Namespace) -> dict[str, Any]:
    progress("ipam: exec ADD latency against lease count")
    ours = tb.BUILD_BIN / "mycni-ipam"
    samples = ipam.measure(ours, ipam.HOST_LOCAL, args.ipam_reps)
    progress("ipam: parallel ADD throughput, 16 processes")
    parallel = ipam.measure_parallel(ours, ipam.HOST_LOCAL, max(1, args.ipam_reps // 2))
    return {
        "reps": args.ipam_reps,
        "samples": samples,
        "medians": ipam.medians(samples),
        "parallel_samples": parallel,
        "parallel_adds_per_s": ipam.throughput(parallel),
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        sys.exit(f"unknown parts: {', '.join(sorted(unknown))}")
    for exe in (tb.DRIVER, *(tb.BUILD_BIN / p for p in tb.PLUGIN_EXECUTABLES)):
        if not os.access(exe, os.X_OK):
            sys.exit(f"{exe} is missing: run `make build driver`")
    stop_on_sigterm()
    out_dir = args.out or tb.REPO / "build" / "bench" / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"meta": meta(args, argv)}
    started = time.monotonic()
    if "datapath" in parts:
        results["datapath"] = run_datapath(args)
    if "control" in parts:
        results["control"] = run_control(args)
    if "ipam" in parts:
        results["ipam"] = run_ipam(args)
    results["meta"]["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    control_summary = {
        k: report.Summary(**{f: v[f] for f in report.Summary.__dataclass_fields__})
        for k, v in results.get("control", {}).get("summary", {}).items()
    }
    results["targets"] = [
        t.to_dict()
        for t in report.targets(
            results.get("datapath", {}).get("ratios", {}),
            control_summary,
            results.get("datapath", {}).get("rules_per_node", 0),
        )
    ]
    report.write_json(results, out_dir / "results.json")
    text = report.markdown(results)
    (out_dir / "results.md").write_text(text + "\n")
    pngs = report.plots(results, out_dir)
    print(text)
    print(
        f"\nwrote {out_dir}/results.json, results.md and {len(pngs)} plots "
        f"in {results['meta']['seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
