"""Exec latency of one ADD by mycni-ipam and by the reference host-local, against how
many leases the network already holds. Part of `python -m tests.bench` (the `ipam`
part), and runnable alone:

    python -m tests.bench.ipam [--ours build/bin/mycni-ipam] [--reps 15]

Both plugins get the same config, each with its own dataDir pre-filled to N leases
(host-local: one file per address; ours: rows in leases.sqlite3, written directly).
Measurements are interleaved (ours, theirs, ours, ...) so both see the same machine
load, and each ADD is followed by an untimed DEL so the lease count stays at N.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST_LOCAL = Path("/usr/lib/cni/host-local")
SUBNET = ipaddress.ip_network("10.128.0.0/16")
COUNTS = (10, 1000, 5000)


def config(data_dir: Path) -> bytes:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "bench",
            "type": "ipam",
            "ipam": {"dataDir": str(data_dir), "subnet": str(SUBNET)},
        }
    ).encode()


def env(command: str, cid: str) -> dict[str, str]:
    return {
        **os.environ,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": "/var/run/netns/bench",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }


def call(exe: Path, command: str, cid: str, conf: bytes) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [str(exe)], input=conf, env=env(command, cid), capture_output=True, check=False
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(
            f"{exe} {command} failed: {proc.stdout.decode()}{proc.stderr.decode()}"
        )
    return elapsed


def fill_ours(exe: Path, data_dir: Path, count: int) -> None:
    call(exe, "ADD", "seed", config(data_dir))  # creates the store and its schema
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    db = sqlite3.connect(data_dir / "leases.sqlite3")
    with db:
        boot = db.execute("SELECT boot_id FROM leases").fetchone()[0]
        db.executemany(
            "INSERT INTO leases VALUES ('bench', 0, ?, ?, 'eth0', ?, ?)",
            (
                (str(SUBNET.network_address + 3 + i), f"fill{i}", boot, created)
                for i in range(count - 1)
            ),
        )
        last = SUBNET.network_address + 2 + count - 1
        db.execute("UPDATE last_reserved SET address = ?", (str(last),))
    db.close()


def fill_host_local(exe: Path, data_dir: Path, count: int) -> None:
    call(exe, "ADD", "seed", config(data_dir))  # creates <dataDir>/bench and a lock
    net_dir = data_dir / "bench"
    for i in range(count - 1):
        (net_dir / str(SUBNET.network_address + 3 + i)).write_text(f"fill{i}\neth0")
    last = SUBNET.network_address + 2 + count - 1
    (net_dir / "last_reserved_ip.0").write_text(str(last))


def measure(
    ours: Path, theirs: Path, reps: int, counts: tuple[int, ...] = COUNTS
) -> list[dict[str, object]]:
    """Every sample: one row per (lease count, plugin, repetition), in seconds."""
    for exe in (ours, theirs):
        if not os.access(exe, os.X_OK):
            sys.exit(f"{exe} is not an executable (run `make build`?)")
    samples: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ipam-") as tmp:
        for count in counts:
            ours_dir, theirs_dir = Path(tmp, f"ours-{count}"), Path(tmp, f"hl-{count}")
            fill_ours(ours, ours_dir, count)
            fill_host_local(theirs, theirs_dir, count)
            for rep in range(reps):
                for name, exe, data_dir in (
                    ("mycni-ipam", ours, ours_dir),
                    ("host-local", theirs, theirs_dir),
                ):
                    conf = config(data_dir)
                    seconds = call(exe, "ADD", f"b{rep}", conf)
                    samples.append(
                        {"leases": count, "plugin": name, "rep": rep, "s": seconds}
                    )
                    call(exe, "DEL", f"b{rep}", conf)
    return samples


def measure_parallel(
    ours: Path, theirs: Path, reps: int, workers: int = 16, per_worker: int = 4
) -> list[dict[str, object]]:
    """ADDs per second when `workers` processes allocate at once (each then DELs),
    the way a node starting many pods calls its IPAM; interleaved per repetition."""
    samples: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ipam-par-") as tmp:
        for rep in range(reps):
            for name, exe in (("mycni-ipam", ours), ("host-local", theirs)):
                conf = config(Path(tmp, f"{name}-{rep}"))

                def worker(w: int, exe: Path = exe, conf: bytes = conf) -> None:
                    for i in range(per_worker):
                        call(exe, "ADD", f"p{w}-{i}", conf)

                started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(worker, range(workers)))
                elapsed = time.perf_counter() - started
                for w in range(workers):
                    for i in range(per_worker):
                        call(exe, "DEL", f"p{w}-{i}", conf)
                samples.append(
                    {
                        "plugin": name,
                        "rep": rep,
                        "workers": workers,
                        "adds": workers * per_worker,
                        "s": elapsed,
                    }
                )
    return samples


def throughput(samples: list[dict[str, object]]) -> dict[str, float]:
    """Median ADDs per second per plugin."""
    return {
        name: statistics.median(
            int(str(s["adds"])) / float(str(s["s"]))
            for s in samples
            if s["plugin"] == name
        )
        for name in ("mycni-ipam", "host-local")
    }


def medians(samples: list[dict[str, object]]) -> list[tuple[int, float, float]]:
    """(lease count, mycni-ipam ms, host-local ms) per count."""
    rows = []
    for count in sorted({int(str(s["leases"])) for s in samples}):
        ms = {
            name: statistics.median(
                float(str(s["s"])) * 1000
                for s in samples
                if s["leases"] == count and s["plugin"] == name
            )
            for name in ("mycni-ipam", "host-local")
        }
        rows.append((count, ms["mycni-ipam"], ms["host-local"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", type=Path, default=REPO / "build/bin/mycni-ipam")
    parser.add_argument("--theirs", type=Path, default=HOST_LOCAL)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    rows = medians(measure(args.ours, args.theirs, args.reps))
    print(f"exec ADD latency, median of {args.reps} interleaved runs")
    print(f"{'leases':>8}  {'mycni-ipam ms':>13}  {'host-local ms':>13}  {'ratio':>6}")
    for count, ours, theirs in rows:
        print(f"{count:>8}  {ours:>13.1f}  {theirs:>13.1f}  {ours / theirs:>6.2f}")
    rates = throughput(measure_parallel(args.ours, args.theirs, max(1, args.reps // 5)))
    print(
        "16 processes at once, ADDs per second: "
        + ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items())
    )


if __name__ == "__main__":
    main()
