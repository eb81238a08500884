"""The datapath part: every configuration measured on every path it has, bare and
with kube-proxy-like rules, the configurations interleaved and repeated."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tests import cluster
from tests import testbed as tb
from tests.bench import rules, traffic
from tests.bench.setups import Datapath
from tests.bench.stats import rotate

log = logging.getLogger(__name__)

# Latency first: for a few seconds after an iperf3 run, a ping-pong through a
# node's stack measured up to 4x slower here (19 -> 80 µs); throughput goes last
# in each phase, and every block starts after a pause.
KINDS = ("latency", "connections", "throughput")
SETTLE_SECONDS = 2.0

# metric name -> (measurement, higher is better); latency yields three metrics.
METRICS: dict[str, bool] = {
    "throughput_gbps": True,
    "rr_mean_us": False,
    "rr_p50_us": False,
    "rr_p99_us": False,
    "conn_per_s": True,
}


def check_reachable(datapaths: list[Datapath]) -> None:
    """Fail before measuring anything if a path does not carry a ping."""
    for dp in datapaths:
        for scenario, path in dp.paths.items():
            if not tb.ping(path.client_ns, path.server_ip):
                raise traffic.TrafficFailed(
                    f"{dp.name} {scenario}: {path.client_ns} "
                    f"cannot ping {path.server_ip}"
                )


def set_rules(datapaths: list[Datapath], services: int) -> int:
    """Install (services > 0) or remove the rules on every node; rules per node."""
    counted = 0
    for dp in datapaths:
        for ns in dp.node_namespaces:
            if services:
                rules.install(ns, services)
            else:
                rules.remove(ns)
            counted = rules.count(ns)
    return counted


def redirected(dp: Datapath) -> int | None:
    """The fast path's REDIRECTED counter on node 1, or None without a program."""
    if dp.name != "mycni-ebpf":
        return None
    try:
        return cluster.stats(dp.bed.node1).get("REDIRECTED")
    except (OSError, KeyError, ImportError) as exc:
        log.warning("cannot read the fast path's counters on %s: %s", dp.name, exc)
        return None


def measure(
    datapaths: list[Datapath],
    reps: int,
    seconds: float,
    services: int,
    progress: Callable[[str], None],
) -> tuple[list[dict[str, Any]], int]:
    """Every sample; and how many nat rules each node held in the rules phase.
    `services` is how many kube-proxy services the rules phase installs."""
    samples: list[dict[str, Any]] = []
    rule_count = 0
    scenarios = sorted({s for dp in datapaths for s in dp.paths}, reverse=True)
    for rep in range(reps):
        phases = (0, services) if rep % 2 == 0 else (services, 0)
        for phase in phases:
            counted = set_rules(datapaths, phase)
            if phase:
                rule_count = counted
            for kind in KINDS:
                time.sleep(SETTLE_SECONDS)
                for scenario in scenarios:
                    for dp in rotate(datapaths, rep):
                        path = dp.paths.get(scenario)
                        if path is None:
                            continue
                        before = redirected(dp)
                        values = run_one(kind, path, seconds)
                        after = redirected(dp)
                        moved = (
                            None if before is None or after is None else after - before
                        )
                        progress(
                            f"rep {rep + 1}/{reps} rules={counted} {kind:<11} "
                            f"{scenario:<12} {dp.name:<10} "
                            + " ".join(f"{k}={v:.3g}" for k, v in values.items())
                        )
                        for metric, value in values.items():
                            samples.append(
                                {
                                    "rep": rep,
                                    "rules": counted,
                                    "scenario": scenario,
                                    "config": dp.name,
                                    "metric": metric,
                                    "value": value,
                                    "redirected": moved,
                                }
                            )
    return samples, rule_count


def run_one(kind: str, path: traffic.Path, seconds: float) -> dict[str, float]:
    if kind == "throughput":
        return {"throughput_gbps": traffic.throughput(path, seconds) / 1e9}
    if kind == "latency":
        found = traffic.latency(path, seconds)
        return {f"rr_{k}_us": v for k, v in found.items()}
    return {"conn_per_s": traffic.connection_rate(path, seconds)}
