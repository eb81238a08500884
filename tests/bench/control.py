"""Chain ADD and DEL through libcni (build/cnidriver), timed as a runtime sees them:
serial, a concurrent burst, each plugin's peak RSS, and where one ADD's time goes.

Each chain gets a testbed of its own and attaches pods to its first node only.
Timed runs use the plugins as installed (no wrappers); RSS and the breakdown come
from separate passes through wrapper scripts that put /usr/bin/time around each
plugin and record when every plugin and helper tool (tc, bpftool, ip, mount) ran.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import cluster
from tests import testbed as tb
from tests.bench.setups import reference_conflist
from tests.bench.stats import rotate

CHAINS: dict[str, str | dict[str, Any]] = {
    "reference": reference_conflist(),
    "mycni": "mycni-vxlan-only",
    "mycni-ebpf": "mycni-full",
}
PLUGIN_PATHS = {
    "vxlan": tb.BUILD_BIN / "vxlan",
    "mycni-ipam": tb.BUILD_BIN / "mycni-ipam",
    "ebpf-redirect": tb.BUILD_BIN / "ebpf-redirect",
    "bridge": tb.REFERENCE_PLUGINS / "bridge",
    "host-local": tb.REFERENCE_PLUGINS / "host-local",
}
TOOLS = ("tc", "bpftool", "ip", "mount")
# Modules whose import cost the breakdown reports: each executable's eager imports,
# and pyroute2, which vxlan imports lazily inside its handler.
IMPORTED = (
    "mycni_vxlan.__main__",
    "mycni_ipam.__main__",
    "mycni_ebpf_redirect.__main__",
    "pyroute2",
)


@dataclass
class Chain:
    """One conflist rendered for the first node of its own testbed."""

    name: str
    bed: tb.Testbed
    conflist: Path
    ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def node(self) -> tb.Node:
        return self.bed.node1

    def new_pod(self) -> tuple[tb.Pod, str]:
        return self.bed.add_pod("c"), f"{self.bed.name}-c{next(self.ids)}"

    def driver(self, cni_path: tuple[Path, ...] = tb.DEFAULT_CNI_PATH) -> tb.Driver:
        return tb.Driver(self.node.name, self.node.cache_dir, cni_path)


def build_chains(names: list[str], stack: contextlib.ExitStack) -> list[Chain]:
    chains = []
    for name in names:
        bed = stack.enter_context(tb.Testbed())
        path = cluster.render(bed, bed.node1, CHAINS[name])  # type: ignore[arg-type]
        chains.append(Chain(name, bed, path))
    return chains


def timed(driver: tb.Driver, verb: str, chain: Chain, pod: tb.Pod, cid: str) -> float:
    """One ADD or DEL through the driver; seconds it took."""
    if verb == "add":
        driver.add(chain.conflist, pod, cid)
    else:
        driver.delete(chain.conflist, pod, cid)
    return driver.last_elapsed


def serial(chains: list[Chain], pods: int) -> list[dict[str, Any]]:
    """`pods` ADDs per chain one after another, chains interleaved, then as many
    DELs in the same order; every sample in seconds."""
    samples: list[dict[str, Any]] = []
    attached: list[tuple[Chain, tb.Pod, str]] = []
    for i in range(pods):
        for chain in rotate(chains, i):
            pod, cid = chain.new_pod()
            seconds = timed(chain.driver(), "add", chain, pod, cid)
            attached.append((chain, pod, cid))
            samples.append({"chain": chain.name, "verb": "ADD", "i": i, "s": seconds})
    for i, (chain, pod, cid) in enumerate(attached):
        seconds = timed(chain.driver(), "del", chain, pod, cid)
        chain.bed.remove_pod(pod)
        samples.append({"chain": chain.name, "verb": "DEL", "i": i, "s": seconds})
    return samples


def burst(chains: list[Chain], size: int, rounds: int) -> list[dict[str, Any]]:
    """`size` concurrent ADDs on one chain at a time (released together), then
    `size` concurrent DELs; chains interleaved over `rounds`. A call that fails (a
    lock timeout under load is a result too) is kept with its CNI error code."""
    samples: list[dict[str, Any]] = []
    for r in range(rounds):
        for chain in rotate(chains, r):
            pods = [chain.new_pod() for _ in range(size)]
            for verb in ("add", "del"):
                for seconds, code in concurrently(chain, verb, pods):
                    sample = {"chain": chain.name, "verb": verb.upper(), "round": r}
                    samples.append({**sample, "s": seconds, "error": code})
            for pod, _ in pods:
                chain.bed.remove_pod(pod)
    return samples


def concurrently(
    chain: Chain, verb: str, pods: list[tuple[tb.Pod, str]]
) -> list[tuple[float, int | None]]:
    """Seconds each call took, and its CNI error code when it failed."""
    start = threading.Barrier(len(pods))

    def one(pod_cid: tuple[tb.Pod, str]) -> tuple[float, int | None]:
        driver = chain.driver()
        start.wait()
        try:
            return timed(driver, verb, chain, *pod_cid), None
        except tb.CniCommandError as exc:
            return driver.last_elapsed, exc.code if exc.code is not None else -1

    with ThreadPoolExecutor(max_workers=len(pods)) as pool:
        return list(pool.map(one, pods))


# --- wrappers: RSS and timing of every plugin and tool call ----------------------

PLUGIN_WRAPPER = """#!/bin/bash
start=$EPOCHREALTIME
/usr/bin/time -q -f %M -o "{log}/rss.$$" {real} "$@"
rc=$?
end=$EPOCHREALTIME
printf '%s %s %s %s %s %s\\n' plugin {name} "$CNI_COMMAND" "$start" "$end" \
    "$(tail -n 1 "{log}/rss.$$")" >> "{log}/calls"
rm -f "{log}/rss.$$"
exit $rc
"""

TOOL_WRAPPER = """#!/bin/bash
start=$EPOCHREALTIME
{real} "$@"
rc=$?
printf '%s %s %s %s %s\\n' tool {name} "$1" "$start" "$EPOCHREALTIME" >> "{log}/calls"
exit $rc
"""


@dataclass(frozen=True)
class Wrappers:
    """A directory of wrapper scripts: plugins (for CNI_PATH) and tools (for PATH)."""

    root: Path

    @property
    def plugins(self) -> Path:
        return self.root / "plugins"

    @property
    def tools(self) -> Path:
        return self.root / "tools"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @classmethod
    def create(cls, root: Path) -> Wrappers:
        wrappers = cls(root)
        for directory in (wrappers.plugins, wrappers.tools, wrappers.log):
            directory.mkdir(parents=True, exist_ok=True)
        for name, real in PLUGIN_PATHS.items():
            text = PLUGIN_WRAPPER.format(log=wrappers.log, real=real, name=name)
            write_executable(wrappers.plugins / name, text)
        for name in TOOLS:
            real = shutil.which(name)
            if real is None:
                raise FileNotFoundError(f"{name} is not on PATH")
            text = TOOL_WRAPPER.format(log=wrappers.log, real=real, name=name)
            write_executable(wrappers.tools / name, text)
        return wrappers

    def take_calls(self) -> list[dict[str, Any]]:
        """The calls logged since the last take, oldest first; clears the log."""
        path = self.log / "calls"
        if not path.exists():
            return []
        calls = []
        for line in path.read_text().splitlines():
            kind, name, what, start, end, *rest = line.split(" ")
            call = {"kind": kind, "name": name, "what": what}
            call |= {"start": float(start), "end": float(end)}
            call["s"] = call["end"] - call["start"]
            if rest and rest[0].isdigit():
                call["rss_kib"] = int(rest[0])
            calls.append(call)
        path.unlink()
        return sorted(calls, key=lambda c: c["start"])


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@contextlib.contextmanager
def tools_on_path(wrappers: Wrappers) -> Iterator[None]:
    """Put the tool wrappers first on PATH for the plugins the driver starts (libcni
    passes its environment on to them)."""
    saved = os.environ["PATH"]
    os.environ["PATH"] = f"{wrappers.tools}:{saved}"
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def peak_rss(
    chains: list[Chain], wrappers: Wrappers, pods: int
) -> list[dict[str, Any]]:
    """ADD then DEL `pods` pods per chain through the wrappers; one row per plugin
    call with its peak RSS (KiB; for vxlan the max of it and its delegated IPAM,
    since /usr/bin/time reports the largest of a process and its children)."""
    rows: list[dict[str, Any]] = []
    for chain in chains:
        driver = chain.driver((wrappers.plugins,))
        pods_ids = [chain.new_pod() for _ in range(pods)]
        wrappers.take_calls()
        for verb in ("add", "del"):
            for pod, cid in pods_ids:
                timed(driver, verb, chain, pod, cid)
        for call in wrappers.take_calls():
            if call["kind"] == "plugin":
                rows.append({"chain": chain.name, **call})
        for pod, _ in pods_ids:
            chain.bed.remove_pod(pod)
    return rows


# --- where one ADD's time goes --------------------------------------------------

HANDLER_LINE = re.compile(
    r" (?P<plugin>[\w-]+)\[(?P<pid>\d+)\] INFO \S+: ADD container=\S+ ifname=\S+ "
    r"ok in (?P<ms>\d+) ms"
)


def breakdown(chain: Chain, wrappers: Wrappers, reps: int) -> list[dict[str, Any]]:
    """`reps` single ADDs (each followed by an untimed DEL) through the wrappers,
    with the plugins' own INFO line ("ADD ... ok in N ms": time inside the handler,
    after interpreter start and module imports). One row per ADD."""
    log_file = chain.node.state_dir / "breakdown.log"
    conflist = json.loads(chain.conflist.read_text())
    for plugin in conflist["plugins"]:
        plugin["logLevel"], plugin["logFile"] = "info", str(log_file)
    driver = chain.driver((wrappers.plugins,))
    rows = []
    with tools_on_path(wrappers):
        for _ in range(reps):
            pod, cid = chain.new_pod()
            log_file.write_text("")
            wrappers.take_calls()
            driver.add(conflist, pod, cid)
            total = driver.last_elapsed
            calls = wrappers.take_calls()
            handlers = [
                (m["plugin"], int(m["ms"]) / 1000)
                for m in HANDLER_LINE.finditer(log_file.read_text())
            ]
            rows.append(attribute(chain.name, total, calls, handlers))
            driver.delete(conflist, pod, cid)
            chain.bed.remove_pod(pod)
    return rows


def attribute(
    chain: str,
    total: float,
    calls: list[dict[str, Any]],
    handlers: list[tuple[str, float]],
) -> dict[str, Any]:
    """Split one ADD: each plugin's wall time, its time inside the handler (the rest
    is start-up and imports), the tools it ran, and the driver's share."""
    plugins = [c for c in calls if c["kind"] == "plugin" and c["what"] == "ADD"]
    tools = [c for c in calls if c["kind"] == "tool"]
    handler_by_plugin: dict[str, list[float]] = {}
    for name, seconds in handlers:
        handler_by_plugin.setdefault(name, []).append(seconds)
    parts: dict[str, dict[str, float]] = {}
    for call in plugins:
        # A tool belongs to the innermost plugin running when it started (the
        # delegated IPAM runs inside vxlan's window).
        inner = [
            t
            for t in tools
            if call["start"] <= t["start"] <= call["end"]
            and not any(
                o is not call and call["start"] <= o["start"] <= t["start"] <= o["end"]
                for o in plugins
            )
        ]
        nested = [
            o["s"]
            for o in plugins
            if o is not call and call["start"] <= o["start"] <= call["end"]
        ]
        handler = handler_by_plugin.get(call["name"], [])
        part = {
            "wall": call["s"],
            "handler": handler.pop(0) if handler else float("nan"),
            "tools": sum(t["s"] for t in inner),
            "tool_calls": float(len(inner)),
            "delegated": sum(nested),
        }
        part["startup"] = part["wall"] - part["handler"]
        part["handler_rest"] = part["handler"] - part["tools"] - part["delegated"]
        parts[call["name"]] = part
    top = [
        c["s"]
        for c in plugins
        if not any(o is not c and o["start"] <= c["start"] <= o["end"] for o in plugins)
    ]
    return {
        "chain": chain,
        "total": total,
        "driver": total - sum(top),
        "plugins": parts,
        "tools": [{k: t[k] for k in ("name", "what", "s")} for t in tools],
    }


def wrapper_overhead(wrappers: Wrappers, reps: int) -> float:
    """Seconds a tool wrapper adds to one call (bash start and the log line)."""
    true = shutil.which("true") or "/bin/true"
    text = TOOL_WRAPPER.format(log=wrappers.log, real=true, name="true")
    write_executable(wrappers.root / "true", text)
    direct, wrapped = [], []
    for _ in range(reps):
        for argv, out in (([true], direct), ([str(wrappers.root / "true")], wrapped)):
            started = time.perf_counter()
            subprocess.run(argv, check=True)
            out.append(time.perf_counter() - started)
    wrappers.take_calls()
    return statistics.median(wrapped) - statistics.median(direct)


def startup_costs(reps: int) -> dict[str, Any]:
    """Start-up measured outside any chain, medians of `reps`: each executable
    answering VERSION (for ours: bootloader, interpreter, PyInstaller's runtime
    hooks and the eager imports; VERSION does no other work), the bare interpreter,
    and, in a fresh .venv interpreter each, how long importing each module takes (the
    bundle ignores PYTHON* variables, so -X importtime cannot look inside it)."""
    env = {"CNI_COMMAND": "VERSION", "PATH": os.environ["PATH"]}
    return {
        "exec_version": {
            name: median_of(reps, [str(path)], env)
            for name, path in PLUGIN_PATHS.items()
        },
        "python_bare": median_of(reps, [sys.executable, "-I", "-c", "pass"], None),
        "runtime_hooks": runtime_hooks(),
        "import_s": {
            module: statistics.median(import_seconds(module) for _ in range(reps))
            for module in (*IMPORTED, *sorted(set(runtime_hooks().values())))
        },
    }


def import_seconds(module: str) -> float:
    """Seconds `import module` takes in a fresh interpreter (nothing cached)."""
    code = (
        "import time; t = time.perf_counter(); "
        f"import {module}; print(time.perf_counter() - t)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(proc.stdout)


# What PyInstaller's runtime hooks import at every start, before our main runs.
HOOK_MODULES = {
    "pyi_rth_pkgres": "pkg_resources",
    "pyi_rth_multiprocessing": "multiprocessing",
    "pyi_rth_inspect": "inspect",
    "pyi_rth_pkgutil": "pkgutil",
}


def runtime_hooks() -> dict[str, str]:
    """The runtime hooks in the current build (from PyInstaller's work files) and
    the module each one imports."""
    found = set()
    for toc in (tb.REPO / "build" / "pyinstaller").rglob("Analysis-*.toc"):
        found |= set(re.findall(r"pyi_rth_\w+", toc.read_text(errors="replace")))
    return {hook: HOOK_MODULES[hook] for hook in sorted(found) if hook in HOOK_MODULES}


def median_of(reps: int, argv: list[str], env: Mapping[str, str] | None) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run(argv, env=env, input=b"{}", capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)
