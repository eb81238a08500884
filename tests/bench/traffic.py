"""The three traffic measurements between two namespaces: one-stream TCP throughput
(iperf3), TCP request/response latency (sockperf ping-pong) and TCP connections per
second (a small Python client and server of ours).

Every server is a child of this process started in the destination namespace, bound
to the destination address only, and killed by its PID when the measurement ends;
every client runs for a fixed, short time.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tests import testbed as tb

SERVER_READY_TIMEOUT = 5.0
# Ports inside the testbed namespaces; nothing else listens there.
IPERF_PORT = 15201
SOCKPERF_PORT = 15202
CONNRATE_PORT = 15203


@dataclass(frozen=True)
class Path:
    """Where one measurement runs: a client namespace and a server address."""

    client_ns: str
    server_ns: str
    server_ip: str


class TrafficFailed(Exception):
    """A traffic tool failed or printed something we cannot read."""


@contextlib.contextmanager
def server(ns: str, argv: Sequence[str], port: int) -> Iterator[subprocess.Popen[str]]:
    """Run a server in ns until the block ends; wait until it listens on port."""
    full = ["nsenter", f"--net={tb.netns_path(ns)}", "--", *argv]
    proc = subprocess.Popen(
        full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_listening(ns, port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def wait_listening(ns: str, port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + SERVER_READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise TrafficFailed(f"server {proc.args} exited: {out.strip()[-300:]}")
        out = tb.run_in(ns, ["ss", "-Hltn", f"sport = :{port}"]).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise TrafficFailed(
        f"server {proc.args} not listening after {SERVER_READY_TIMEOUT}s"
    )


def throughput(path: Path, seconds: float) -> float:
    """One TCP stream for `seconds`: bits per second the receiver got."""
    srv = ["iperf3", "-s", "-1", "-B", path.server_ip, "-p", str(IPERF_PORT)]
    with server(path.server_ns, srv, IPERF_PORT):
        proc = tb.run_in(
            path.client_ns,
            [
                "iperf3",
                "-c",
                path.server_ip,
                "-p",
                str(IPERF_PORT),
                "-J",
                "-t",
                f"{seconds:g}",
            ],
            check=False,
            timeout=seconds + 20,
        )
    try:
        report = json.loads(proc.stdout)
        return float(report["end"]["sum_received"]["bits_per_second"])
    except (ValueError, KeyError, TypeError) as exc:
        raise TrafficFailed(
            f"iperf3 to {path.server_ip}: {proc.stdout[-300:]}"
        ) from exc


SOCKPERF_VALUE = re.compile(
    r"avg-rtt=(?P<mean>[\d.]+)|percentile (?P<pct>50|99)\.000 =\s*(?P<value>[\d.]+)"
)


def latency(path: Path, seconds: float) -> dict[str, float]:
    """TCP ping-pong for `seconds`: full round-trip mean, p50 and p99 in µs."""
    srv = ["sockperf", "server", "--tcp", "-i", path.server_ip]
    srv += ["-p", str(SOCKPERF_PORT)]
    with server(path.server_ns, srv, SOCKPERF_PORT):
        proc = tb.run_in(
            path.client_ns,
            [
                "sockperf",
                "ping-pong",
                "--tcp",
                "--full-rtt",
                "-i",
                path.server_ip,
                "-p",
                str(SOCKPERF_PORT),
                "-t",
                f"{seconds:g}",
            ],
            check=False,
            timeout=seconds + 20,
        )
    return parse_sockperf(proc.stdout + proc.stderr)


def parse_sockperf(text: str) -> dict[str, float]:
    """mean, p50, p99 (µs) out of sockperf's summary; ANSI colours are ignored."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    found: dict[str, float] = {}
    for match in SOCKPERF_VALUE.finditer(text):
        if match["mean"]:
            found["mean"] = float(match["mean"])
        else:
            found[f"p{match['pct']}"] = float(match["value"])
    if set(found) != {"mean", "p50", "p99"}:
        raise TrafficFailed(f"sockperf summary unreadable: {text[-400:]}")
    return found


# The server answers each connection with one byte and closes first, so TIME_WAIT
# lands on the server side and the client never runs out of ephemeral ports.
CONNRATE_SERVER = r"""
import socket, sys, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(512)
deadline = time.monotonic() + float(sys.argv[3])
srv.settimeout(1.0)
while time.monotonic() < deadline:
    try:
        conn, _ = srv.accept()
    except TimeoutError:
        continue
    with conn:
        if conn.recv(1):
            conn.sendall(b"y")
"""

CONNRATE_CLIENT = r"""
import socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
seconds, limit = float(sys.argv[3]), int(sys.argv[4])
count = 0
started = time.monotonic()
end = started + seconds
while count < limit and time.monotonic() < end:
    with socket.create_connection((ip, port), timeout=5) as conn:
        conn.sendall(b"x")
        if conn.recv(1) != b"y":
            sys.exit("no answer")
        conn.recv(1)  # EOF: the server closed
    count += 1
print(count, time.monotonic() - started)
"""

CONNRATE_LIMIT = 200_000


def connection_rate(path: Path, seconds: float) -> float:
    """TCP connections per second (connect, one byte each way, close), one client."""
    srv = [sys.executable, "-c", CONNRATE_SERVER, path.server_ip, str(CONNRATE_PORT)]
    srv.append(f"{seconds + 15:g}")
    with server(path.server_ns, srv, CONNRATE_PORT):
        proc = tb.run_in(
            path.client_ns,
            [
                sys.executable,
                "-c",
                CONNRATE_CLIENT,
                path.server_ip,
                str(CONNRATE_PORT),
                f"{seconds:g}",
                str(CONNRATE_LIMIT),
            ],
            check=False,
            timeout=seconds + 20,
        )
    try:
        count, elapsed = proc.stdout.split()
        return int(count) / float(elapsed)
    except ValueError as exc:
        output = (proc.stdout + proc.stderr)[-300:]
        raise TrafficFailed(f"connection client to {path.server_ip}: {output}") from exc
