"""Summaries, ratios and targets out of the samples, and the three outputs: JSON
(every sample too), a Markdown table and PNG plots."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.datapath import METRICS
from tests.bench.stats import Summary, speedup, summarize

OURS = ("mycni-ebpf", "mycni")


# --- summaries and ratios --------------------------------------------------------


def summarize_datapath(samples: list[dict[str, Any]]) -> dict[str, Summary]:
    """Key "rules/scenario/config/metric" -> summary of its repetitions."""
    groups: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        groups[key(s["rules"], s["scenario"], s["config"], s["metric"])].append(
            s["value"]
        )
    return {k: summarize(v) for k, v in groups.items()}


def key(*parts: object) -> str:
    return "/".join(str(p) for p in parts)


def datapath_ratios(summaries: dict[str, Summary]) -> dict[str, float]:
    """ "rules/scenario/metric/ours:other" -> how many times better ours is, from
    the medians of one run."""
    ratios = {}
    for k, ours in summaries.items():
        rules, scenario, config, metric = k.split("/")
        if config not in OURS:
            continue
        for k2, other in summaries.items():
            r2, s2, c2, m2 = k2.split("/")
            if (r2, s2, m2) != (rules, scenario, metric) or c2 == config:
                continue
            ratios[key(rules, scenario, metric, f"{config}:{c2}")] = speedup(
                ours.median, other.median, higher_is_better=METRICS[metric]
            )
    return ratios


def summarize_control(samples: list[dict[str, Any]]) -> dict[str, Summary]:
    """Key "serial|burst/chain/VERB" -> summary in milliseconds. A failed call
    counts with the time until its error: the runtime waited that long, and then
    has to retry."""
    groups: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        groups[key(s["mode"], s["chain"], s["verb"])].append(s["s"] * 1000)
    return {k: summarize(v) for k, v in groups.items()}


def failures(samples: list[dict[str, Any]]) -> dict[str, int]:
    """Key "mode/chain/VERB" -> how many calls failed."""
    found: dict[str, int] = defaultdict(int)
    for s in samples:
        if s.get("error") is not None:
            found[key(s["mode"], s["chain"], s["verb"])] += 1
    return dict(found)


def summarize_rss(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Key "chain/plugin/VERB" -> the largest peak RSS seen, KiB."""
    peaks: dict[str, int] = {}
    for row in rows:
        if "rss_kib" in row:
            k = key(row["chain"], row["name"], row["what"])
            peaks[k] = max(peaks.get(k, 0), row["rss_kib"])
    return peaks


def summarize_breakdown(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """chain -> component -> median seconds over the ADDs measured."""
    out: dict[str, dict[str, float]] = {}
    for chain in sorted({r["chain"] for r in rows}):
        values: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            if r["chain"] != chain:
                continue
            values["total"].append(r["total"])
            values["driver"].append(r["driver"])
            for plugin, part in r["plugins"].items():
                for name, v in part.items():
                    values[f"{plugin}.{name}"].append(v)
        out[chain] = {k: median_finite(v) for k, v in values.items()}
    return out


def median_finite(values: list[float]) -> float:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


# --- targets -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    threshold: float
    at_most: bool  # the value must stay at or below the threshold
    unit: str

    @property
    def met(self) -> bool | None:
        if math.isnan(self.value):
            return None
        return (
            self.value <= self.threshold
            if self.at_most
            else self.value >= self.threshold
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "at_most": self.at_most,
            "unit": self.unit,
            "met": self.met,
        }


def targets(
    ratios: dict[str, float], control: dict[str, Summary], rules: int
) -> list[Target]:
    """Issue 6's targets, from ratios and medians of this run. NaN: not measured."""

    def ratio(scenario: str, metric: str, pair: str) -> float:
        return ratios.get(key(rules, scenario, metric, pair), math.nan)

    def ms(k: str, attr: str) -> float:
        summary = control.get(k)
        return getattr(summary, attr) if summary else math.nan

    add_ours = ms("serial/mycni-ebpf/ADD", "p50")
    add_ref = ms("serial/reference/ADD", "p50")
    same, across = "same-node", "across-nodes"
    return [
        Target(
            f"{same}, rules: request/response mycni-ebpf / reference",
            ratio(same, "rr_mean_us", "mycni-ebpf:reference"),
            1.3,
            False,
            "x",
        ),
        Target(
            f"{same}, rules: throughput mycni-ebpf / reference",
            ratio(same, "throughput_gbps", "mycni-ebpf:reference"),
            1.15,
            False,
            "x",
        ),
        Target(
            f"{same}, rules: throughput mycni-ebpf / veth pair",
            ratio(same, "throughput_gbps", "mycni-ebpf:veth"),
            0.95,
            False,
            "x",
        ),
        Target(
            f"{across}, rules: request/response mycni-ebpf / reference",
            ratio(across, "rr_mean_us", "mycni-ebpf:reference"),
            1.3,
            False,
            "x",
        ),
        Target(
            f"{across}, rules: throughput mycni-ebpf / native routing",
            ratio(across, "throughput_gbps", "mycni-ebpf:native"),
            0.9,
            False,
            "x",
        ),
        Target("chain ADD p50 (mycni-ebpf, serial)", add_ours, 100.0, True, "ms"),
        Target(
            "chain ADD p50 mycni-ebpf / reference", add_ours / add_ref, 5.0, True, "x"
        ),
        Target(
            "burst-16 ADD p99 (mycni-ebpf)",
            ms("burst/mycni-ebpf/ADD", "p99"),
            1000.0,
            True,
            "ms",
        ),
    ]


# --- Markdown ------------------------------------------------------------------

RATIO_PAIRS = (
    "mycni-ebpf:reference",
    "mycni:reference",
    "mycni-ebpf:mycni",
    "mycni-ebpf:veth",
    "mycni-ebpf:native",
    "mycni:native",
)
RATIO_METRICS = ("throughput_gbps", "rr_mean_us", "conn_per_s")

DATAPATH_COLUMNS = (
    ("throughput_gbps", "Gbit/s", "{:.2f}"),
    ("rr_mean_us", "RR mean µs", "{:.1f}"),
    ("rr_p50_us", "RR p50 µs", "{:.1f}"),
    ("rr_p99_us", "RR p99 µs", "{:.1f}"),
    ("conn_per_s", "conn/s", "{:.0f}"),
)


def cell(summary: Summary | None, fmt: str) -> str:
    if summary is None:
        return "-"
    if summary.n == 1:
        return fmt.format(summary.median)
    low, high = fmt.format(summary.low), fmt.format(summary.high)
    return f"{fmt.format(summary.median)} ({low}-{high})"


def number(value: float) -> str:
    """Three significant digits, without exponents for large values."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        f"# make bench, {meta['date']}",
        "",
        f"{meta['host']}: kernel {meta['kernel']}, {meta['cpus']} CPUs, load "
        f"{meta['load_before']} before; commit {meta['commit']}. "
        f"Command: `{meta['command']}`.",
        "",
    ]
    if "datapath" in results:
        out += markdown_datapath(results["datapath"], meta)
    if "control" in results:
        out += markdown_control(results["control"], meta)
    if "ipam" in results:
        out += markdown_ipam(results["ipam"])
    if results.get("targets"):
        out += ["## Targets (issue 6), from ratios within this run", ""]
        rows = []
        for t in results["targets"]:
            verdict = {True: "met", False: "not met", None: "not measured"}[t["met"]]
            sign = "<=" if t["at_most"] else ">="
            rows.append(
                [
                    t["name"],
                    f"{number(t['value'])} {t['unit']}",
                    f"{sign} {t['threshold']:g} {t['unit']}",
                    verdict,
                ]
            )
        out += [*table(["target", "measured", "wanted", ""], rows), ""]
    return "\n".join(out)


def markdown_datapath(data: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    summaries = {
        k: Summary(**{f: v[f] for f in Summary.__dataclass_fields__})
        for k, v in data["summary"].items()
    }
    out = [
        "## Datapath",
        "",
        f"Median of {meta['args']['reps']} interleaved repetitions (min-max), "
        f"{meta['args']['seconds']:g} s each; RR is a TCP ping-pong round trip "
        "(sockperf), conn/s one client connecting, exchanging a byte and closing. "
        f'"rules": {data["rules_per_node"]} kube-proxy-like nat rules in each node '
        "namespace. MTU: overlays and the veth pair "
        f"{meta['mtu']['overlay']}, native routing {meta['mtu']['native']}.",
        "",
    ]
    configs = data["configs"]
    for rules in sorted({int(k.split("/")[0]) for k in summaries}):
        for scenario in ("same-node", "across-nodes"):
            rows = []
            for config in configs:
                found = [
                    summaries.get(key(rules, scenario, config, m))
                    for m, _, _ in DATAPATH_COLUMNS
                ]
                if not any(found):
                    continue
                rows.append(
                    [config]
                    + [
                        cell(s, f)
                        for s, (_, _, f) in zip(found, DATAPATH_COLUMNS, strict=True)
                    ]
                )
            if rows:
                title = f"rules={rules}" if rules else "bare"
                out += [f"### {scenario}, {title}", ""]
                out += [*table(["config"] + [c[1] for c in DATAPATH_COLUMNS], rows), ""]
    ratios = data["ratios"]
    ratio_rows = []
    for rules in sorted({int(k.split("/")[0]) for k in ratios}):
        for scenario in ("same-node", "across-nodes"):
            for pair in RATIO_PAIRS:
                found = [
                    ratios.get(key(rules, scenario, metric, pair))
                    for metric in RATIO_METRICS
                ]
                if not any(v is not None for v in found):
                    continue
                phase = "bare" if rules == 0 else f"{rules} rules"
                ratio_rows.append(
                    [phase, scenario, pair.replace(":", " / ")]
                    + ["-" if v is None else f"{v:.2f}x" for v in found]
                )
    out += ["### Ratios of medians (> 1: the first is better)", ""]
    header = ["", "path", "pair", "throughput", "RR (mean)", "conn/s"]
    out += [*table(header, ratio_rows), ""]
    return out


def markdown_control(data: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    summ = data["summary"]

    def ms(k: str, attr: str) -> str:
        return f"{summ[k][attr]:.0f}" if k in summ else "-"

    rows = []
    for chain in data["chains"]:
        rss = data["rss_kib"]
        peaks = ", ".join(
            f"{k.split('/')[1]} {v / 1024:.0f}"
            for k, v in sorted(rss.items())
            if k.startswith(f"{chain}/") and k.endswith("/ADD")
        )
        rows.append(
            [
                chain,
                ms(f"serial/{chain}/ADD", "p50"),
                ms(f"serial/{chain}/ADD", "p90"),
                ms(f"serial/{chain}/DEL", "p50"),
                ms(f"serial/{chain}/DEL", "p90"),
                ms(f"burst/{chain}/ADD", "p50"),
                ms(f"burst/{chain}/ADD", "p99"),
                ms(f"burst/{chain}/DEL", "p50"),
                ms(f"burst/{chain}/DEL", "p99"),
                peaks or "-",
            ]
        )
    args = meta["args"]
    out = [
        "## Control plane",
        "",
        f"Chain ADD and DEL through libcni (build/cnidriver under nsenter), ms. "
        f"Serial: {args['pods']} pods per chain, chains interleaved; burst: "
        f"{args['burst']} concurrent ADDs (then DELs), "
        f"{args['burst_rounds']} round(s). "
        "Peak RSS (MiB) of each plugin executable during ADD, via /usr/bin/time "
        "(vxlan's includes its delegated IPAM child).",
        "",
    ]
    out += [
        *table(
            [
                "chain",
                "ADD p50",
                "ADD p90",
                "DEL p50",
                "DEL p90",
                "burst ADD p50",
                "burst ADD p99",
                "burst DEL p50",
                "burst DEL p99",
                "peak RSS MiB",
            ],
            rows,
        ),
        "",
    ]
    for k, n in sorted(data.get("failures", {}).items()):
        codes = sorted(
            {
                str(x["error"])
                for x in data["samples"]
                if x.get("error") is not None
                and key(x["mode"], x["chain"], x["verb"]) == k
            }
        )
        out.append(
            f"- {k}: {n} call(s) failed (CNI codes {', '.join(codes)}), "
            "left out of the percentiles above"
        )
    if data.get("failures"):
        out.append("")
    out += markdown_breakdown(data)
    return out


BREAKDOWN_ROWS = (
    ("total", "chain ADD through libcni (wrapped, logging on)"),
    ("driver", "cnidriver + libcni + nsenter (total minus the top-level plugins)"),
)


def markdown_breakdown(data: dict[str, Any]) -> list[str]:
    bd = data.get("breakdown_median")
    if not bd:
        return []
    out = [
        "### Where one ADD's time goes (medians, ms)",
        "",
        f"{data['breakdown_reps']} ADDs per chain through wrapper scripts that time "
        "each plugin and each tc/bpftool/ip/mount it runs (a wrapper adds "
        f'{data["wrapper_overhead_s"] * 1000:.1f} ms per call); "handler" is the '
        "plugin's own `ok in N ms` (after interpreter start and module imports), "
        '"start-up" the plugin\'s wall time minus it.',
        "",
    ]
    rows = []
    for chain, parts in bd.items():
        for k, label in BREAKDOWN_ROWS:
            rows.append([chain, label, f"{parts[k] * 1000:.0f}"])
        plugins = sorted({p.split(".")[0] for p in parts if "." in p})
        for plugin in plugins:
            rows += breakdown_rows(chain, plugin, parts)
    out += [*table(["chain", "part", "ms"], rows), ""]
    start = data["startup"]
    out += ["Measured outside any chain (medians):", ""]
    srows = [
        [f"exec {name} VERSION (start-up and eager imports)", f"{v * 1000:.0f}"]
        for name, v in start["exec_version"].items()
    ]
    bare = start["python_bare"] * 1000
    srows.append(["bare interpreter (.venv python -I -c pass)", f"{bare:.0f}"])
    hooks = {module: hook for hook, module in start["runtime_hooks"].items()}
    for module, seconds in start["import_s"].items():
        why = f", PyInstaller hook {hooks[module]}" if module in hooks else ""
        srows.append(
            [f"import {module} (fresh .venv interpreter{why})", f"{seconds * 1000:.0f}"]
        )
    out += [*table(["what", "ms"], srows), ""]
    return out


def breakdown_rows(chain: str, plugin: str, parts: dict[str, float]) -> list[list[str]]:
    def get(name: str) -> float:
        return parts.get(f"{plugin}.{name}", math.nan) * 1000

    rows = [[chain, f"{plugin}: wall", f"{get('wall'):.0f}"]]
    if not math.isnan(get("startup")):
        label = f"{plugin}: start-up, eager imports, exit (wall - handler)"
        rows.append([chain, label, f"{get('startup'):.0f}"])
    if get("delegated") > 0:
        label = f"{plugin}: delegated IPAM exec"
        rows.append([chain, label, f"{get('delegated'):.0f}"])
    if get("tools") > 0:
        calls = get("tool_calls") / 1000
        label = f"{plugin}: subprocesses ({calls:.0f} calls)"
        rows.append([chain, label, f"{get('tools'):.0f}"])
    if not math.isnan(get("handler_rest")):
        label = f"{plugin}: rest of handler (lazy imports, netlink, files, locks)"
        rows.append([chain, label, f"{get('handler_rest'):.0f}"])
    return rows


def markdown_ipam(data: dict[str, Any]) -> list[str]:
    out = [
        "## IPAM exec ADD latency against leases held",
        "",
        f"Median of {data['reps']} interleaved runs, ms.",
        "",
    ]
    rows = [
        [str(c), f"{o:.1f}", f"{t:.1f}", f"{o / t:.2f}"] for c, o, t in data["medians"]
    ]
    out += [*table(["leases", "mycni-ipam", "host-local", "ratio"], rows), ""]
    rates = data.get("parallel_adds_per_s")
    if rates:
        out += [
            "16 processes allocating at once (then releasing), median ADDs per second:",
            "",
            *table(
                ["mycni-ipam", "host-local", "ratio"],
                [
                    [
                        f"{rates['mycni-ipam']:.1f}",
                        f"{rates['host-local']:.1f}",
                        f"{rates['mycni-ipam'] / rates['host-local']:.2f}",
                    ]
                ],
            ),
            "",
        ]
    return out


# --- plots ---------------------------------------------------------------------


def plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNGs of the datapath metrics, ADD latency distributions and the IPAM curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if "datapath" in results:
        data = results["datapath"]
        for metric, label, _ in DATAPATH_COLUMNS:
            fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
            for ax, scenario in zip(axes, ("same-node", "across-nodes"), strict=True):
                draw_bars(ax, data, metric, scenario)
                ax.set_title(scenario)
            axes[0].set_ylabel(label)
            axes[1].legend(fontsize="small")
            fig.suptitle(f"{label}: median, bars min-max over repetitions")
            fig.tight_layout()
            written.append(save(fig, out_dir / f"datapath-{metric}.png"))
            plt.close(fig)
    if "control" in results:
        samples = results["control"]["samples"]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, mode in zip(axes, ("serial", "burst"), strict=True):
            labels, series = [], []
            for chain in results["control"]["chains"]:
                for verb in ("ADD", "DEL"):
                    values = [
                        s["s"] * 1000
                        for s in samples
                        if s["mode"] == mode
                        and s["chain"] == chain
                        and s["verb"] == verb
                    ]
                    if values:
                        labels.append(f"{chain}\n{verb}")
                        series.append(values)
            if series:
                ax.boxplot(series, whis=(1, 99))
                ax.set_xticks(range(1, len(labels) + 1), labels)
            ax.set_title(f"{mode} chain ADD/DEL through libcni")
            ax.set_ylabel("ms")
            ax.tick_params(axis="x", labelsize="small")
        fig.tight_layout()
        written.append(save(fig, out_dir / "control-latency.png"))
        plt.close(fig)
    if "ipam" in results:
        rows = results["ipam"]["medians"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="mycni-ipam")
        ax.plot([r[0] for r in rows], [r[2] for r in rows], "s-", label="host-local")
        ax.set_xscale("log")
        ax.set_xlabel("leases held")
        ax.set_ylabel("exec ADD ms (median)")
        ax.legend()
        fig.tight_layout()
        written.append(save(fig, out_dir / "ipam-leases.png"))
        plt.close(fig)
    return written


def draw_bars(ax: Any, data: dict[str, Any], metric: str, scenario: str) -> None:
    configs = data["configs"]
    phases = sorted({int(k.split("/")[0]) for k in data["summary"]})
    width = 0.8 / max(1, len(phases))
    for j, rules in enumerate(phases):
        xs, meds, lows, highs = [], [], [], []
        for i, config in enumerate(configs):
            s = data["summary"].get(key(rules, scenario, config, metric))
            if s:
                xs.append(i + j * width)
                meds.append(s["median"])
                lows.append(s["median"] - s["low"])
                highs.append(s["high"] - s["median"])
        ax.bar(
            xs,
            meds,
            width,
            yerr=[lows, highs],
            capsize=3,
            label="bare" if rules == 0 else f"{rules} rules",
        )
    ax.set_xticks([i + width * (len(phases) - 1) / 2 for i in range(len(configs))])
    ax.set_xticklabels(configs, rotation=20, fontsize="small")


def save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=1, default=str, allow_nan=True))
