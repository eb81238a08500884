"""Fixtures for the eBPF tests: a compiled from_pod object, scratch node namespaces
with their own bpffs pin root, and crafted frames. Nothing here touches the root
namespace's links, routes or /sys/fs/bpf."""

from __future__ import annotations

import os
import secrets
import shutil
import struct
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BPF_SRC = REPO / "bpf"
COMMAND_TIMEOUT = 30


def compile_bpf(source: Path, out: Path) -> Path:
    """The Makefile's rule, so tests do not depend on `make bpf` having run."""
    arch_inc = f"/usr/include/{os.uname().machine}-linux-gnu"
    subprocess.run(
        ["clang", "-O2", "-g", "-Wall", "-Werror", "-target", "bpf",
         f"-I{arch_inc}", f"-I{BPF_SRC}", "-c", str(source), "-o", str(out)],
        check=True, capture_output=True, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def from_pod_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("clang") is None:
        pytest.skip("clang not found in PATH")
    out = tmp_path_factory.mktemp("bpf") / "from_pod.bpf.o"
    return compile_bpf(BPF_SRC / "from_pod.bpf.c", out)


@dataclass(frozen=True)
class ScratchNode:
    """A node netns and a private bpffs pin root, both made and removed by a test."""

    netns: str
    workdir: Path

    @property
    def pin_root(self) -> Path:
        return self.workdir / "bpf" / "mycni"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    def run(
        self, argv: Sequence[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # nsenter --net, not `ip netns exec`: the latter remounts /sys in a private
        # mount namespace (tests use a pin root outside /sys anyway).
        return subprocess.run(
            ["nsenter", f"--net=/var/run/netns/{self.netns}", *argv],
            check=check, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        )  # fmt: skip


@pytest.fixture
def scratch_node(tmp_path: Path) -> Iterator[ScratchNode]:
    """Node netns `mcebpf-<hex>` with a bpffs mounted at <tmp>/bpf; always undone."""
    for tool in ("ip", "nsenter", "tc", "bpftool", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found in PATH")
    name = f"mcebpf-{secrets.token_hex(4)}"
    node = ScratchNode(netns=name, workdir=tmp_path)
    bpffs = tmp_path / "bpf"
    bpffs.mkdir()
    mounted = False
    try:
        subprocess.run(
            ["ip", "netns", "add", name], check=True, timeout=COMMAND_TIMEOUT
        )
        subprocess.run(
            ["mount", "-t", "bpf", "bpf", str(bpffs)],
            check=True,
            timeout=COMMAND_TIMEOUT,
        )
        mounted = True
        yield node
    finally:
        if mounted:
            subprocess.run(["umount", str(bpffs)], check=False, timeout=COMMAND_TIMEOUT)
        subprocess.run(
            ["ip", "netns", "del", name], check=False, timeout=COMMAND_TIMEOUT
        )


def add_veth(node: ScratchNode, host: str, pod_ns: str, peer: str = "eth0") -> None:
    """A veth with `host` in the node and `peer` in pod netns pod_ns (made here)."""
    subprocess.run(["ip", "netns", "add", pod_ns], check=True, timeout=COMMAND_TIMEOUT)
    node.run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer,
              "netns", pod_ns])  # fmt: skip
    node.run(["ip", "link", "set", host, "up"])


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_frame(src: str, dst: str, ttl: int = 64, payload: bytes = b"\0" * 8) -> bytes:
    """Ethernet + IPv4 (UDP protocol number, no UDP header needed) with a valid sum."""
    import ipaddress

    header = bytearray(struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, ttl, 17, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ))  # fmt: skip
    header[10:12] = struct.pack("!H", ipv4_checksum(bytes(header)))
    eth = bytes.fromhex("0200000000aa0200000000bb0800")
    return eth + bytes(header) + payload


ARP_FRAME = bytes.fromhex("ffffffffffff0200000000bb0806") + b"\0" * 28


def ipv6_frame(
    src: str,
    dst: str,
    hop_limit: int = 64,
    next_header: int = 17,
    payload: bytes = b"\0" * 8,
) -> bytes:
    """Ethernet + IPv6 (UDP by default; no UDP header needed, no IPv6 checksum)."""
    import ipaddress

    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(payload), next_header, hop_limit,
        ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed,
    )  # fmt: skip
    eth = bytes.fromhex("0200000000aa0200000000bb86dd")
    return eth + header + payload


def icmpv6_frame(src: str, dst: str, icmp_type: int, hop_limit: int = 255) -> bytes:
    """An ICMPv6 message of icmp_type with a 20-byte body (checksum left 0: the
    program does not check it), e.g. a neighbour solicitation (135)."""
    body = bytes([icmp_type, 0, 0, 0]) + bytes(20)
    return ipv6_frame(src, dst, hop_limit, next_header=58, payload=body)
