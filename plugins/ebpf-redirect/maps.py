"""Entries of the pinned maps: key/value encoding and bpftool update/delete/dump.

mycni_ep4 and mycni_ep6 hold the same values; a key is the address as on the wire
(4 or 16 bytes), so one set of functions serves both.
"""

from __future__ import annotations

import logging
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from libcni.errors import BpfFailure, shown
from libcni.types import IPAddress

from . import command
from .counters import Stat, sum_per_cpu

log = logging.getLogger(__name__)

# struct endpoint in bpf/lib/endpoint.h: __u32 ifindex (host order), pod_mac[6],
# host_mac[6]; 16 bytes, no padding.
ENDPOINT = struct.Struct("=I6s6s")


@dataclass(frozen=True)
class Endpoint:
    """Where the fast path delivers a local pod's traffic."""

    ifindex: int
    pod_mac: bytes
    host_mac: bytes

    def encode(self) -> bytes:
        return ENDPOINT.pack(self.ifindex, self.pod_mac, self.host_mac)

    @classmethod
    def decode(cls, raw: bytes) -> Endpoint:
        ifindex, pod_mac, host_mac = ENDPOINT.unpack(raw)
        return cls(ifindex=ifindex, pod_mac=pod_mac, host_mac=host_mac)


def parse_mac(text: str) -> bytes:
    """aa:bb:cc:dd:ee:ff -> 6 bytes; ValueError for anything else."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"{shown(text)} is not a MAC address")
    return bytes(int(p, 16) for p in parts)


def encode_key(ip: IPAddress) -> bytes:
    """The map key is the address in network byte order, as in the IP header."""
    return ip.packed


def hex_args(raw: bytes) -> list[str]:
    """bpftool's `hex` form: one argument per byte."""
    return [f"{b:02x}" for b in raw]


class MapFull(BpfFailure):
    """A new key did not fit: the map holds max_entries already."""


@dataclass(frozen=True)
class Fill:
    """How full a pinned map is, read back after an update failed."""

    pin: Path
    used: int
    max_entries: int
    has_key: bool


def put_endpoint(map_pin: Path, ip: IPAddress, endpoint: Endpoint) -> None:
    """Write ip's entry; MapFull when the map has no room for a new address."""
    log.debug("map %s: %s -> %s", map_pin, ip, endpoint)
    try:
        command.run(
            f"write endpoint {ip} to {map_pin}",
            [
                "bpftool", "map", "update", "pinned", str(map_pin),
                "key", "hex", *hex_args(encode_key(ip)),
                "value", "hex", *hex_args(endpoint.encode()),
            ],
        )  # fmt: skip
    except command.CommandFailed as exc:
        # bpftool reports the kernel's E2BIG only as text and exits 255 for every
        # failure; read the map back rather than parse the message.
        full = full_map_error(exc, ip, read_fill_quietly(map_pin, ip))
        if full is None:
            raise
        raise full from exc


def full_map_error(
    exc: command.CommandFailed, ip: IPAddress, fill: Fill | None
) -> MapFull | None:
    """MapFull when a failed update met a full map with no entry for ip (hash maps
    refuse a new key with E2BIG then); None when the failure was something else."""
    if fill is None or fill.has_key or fill.used < fill.max_entries:
        return None
    return MapFull(
        f"failed to write endpoint {ip} to {fill.pin.name}: the map is full "
        f"({fill.used} of max_entries {fill.max_entries}) at {fill.pin}; "
        "release pods on this node or build the objects with a larger "
        f"MYCNI_EP{ip.version}_MAX_ENTRIES",
        exc.details,
    )


def read_fill_quietly(map_pin: Path, ip: IPAddress) -> Fill | None:
    """The map's fill, or None when it cannot be read (the update's error stands)."""
    try:
        return read_fill(map_pin, ip)
    except BpfFailure as exc:
        log.debug("cannot read %s back: %s", map_pin, exc.msg)
        return None


def read_fill(map_pin: Path, ip: IPAddress) -> Fill:
    info: dict[str, Any] = command.run_json(
        f"read map {map_pin}", ["bpftool", "-j", "map", "show", "pinned", str(map_pin)]
    )
    have = dump_endpoints(map_pin)
    return Fill(map_pin, len(have), int(info.get("max_entries", 0)), ip in have)


def dump_endpoints(map_pin: Path) -> dict[IPAddress, Endpoint]:
    dump: list[dict[str, Any]] = command.run_json(
        f"dump endpoints of {map_pin}",
        ["bpftool", "-j", "map", "dump", "pinned", str(map_pin)],
    )
    return {
        ip_address(_bytes_of(entry["key"])): Endpoint.decode(_bytes_of(entry["value"]))
        for entry in dump
    }


def dump_endpoint_maps(map_pins: Iterable[Path]) -> dict[IPAddress, Endpoint]:
    """The entries of each of these endpoint maps that is pinned, in one dict."""
    found: dict[IPAddress, Endpoint] = {}
    for pin in map_pins:
        if pin.exists():
            found.update(dump_endpoints(pin))
    return found


def delete_endpoint_quietly(map_pin: Path, ip: IPAddress, ifindex: int) -> None:
    """Remove ip's entry if it still points at ifindex; tolerate it being gone.

    The ifindex check keeps a late DEL from removing an entry that a newer pod,
    given the same address after ours released it, has written since.
    """
    if not map_pin.exists():
        return
    current = dump_endpoints(map_pin).get(ip)
    if current is None or current.ifindex != ifindex:
        return
    try:
        command.run(
            f"delete endpoint {ip} from {map_pin}",
            [
                "bpftool", "map", "delete", "pinned", str(map_pin),
                "key", "hex", *hex_args(encode_key(ip)),
            ],
        )  # fmt: skip
    except command.CommandFailed:
        if ip in dump_endpoints(map_pin):
            raise
        log.debug("map %s: %s was deleted concurrently", map_pin, ip)


def put_overlay(map_pin: Path, ifindex: int) -> None:
    """Let from_pod send into the VXLAN device with this ifindex."""
    log.debug("map %s: overlay device %d", map_pin, ifindex)
    command.run(
        f"write overlay device {ifindex} to {map_pin}",
        [
            "bpftool", "map", "update", "pinned", str(map_pin),
            "key", "hex", *hex_args(_u32(ifindex)),
            "value", "hex", *hex_args(_u32(0)),
        ],
    )  # fmt: skip


def dump_overlays(map_pin: Path) -> set[int]:
    if not map_pin.exists():
        return set()
    dump: list[dict[str, Any]] = command.run_json(
        f"dump overlay devices of {map_pin}",
        ["bpftool", "-j", "map", "dump", "pinned", str(map_pin)],
    )
    return {int.from_bytes(_bytes_of(entry["key"]), sys.byteorder) for entry in dump}


def _u32(value: int) -> bytes:
    return value.to_bytes(4, sys.byteorder)


def read_stats(map_pin: Path) -> dict[Stat, int]:
    """The fast path's counters, summed over the CPUs."""
    dump: list[dict[str, Any]] = command.run_json(
        f"read counters from {map_pin}",
        ["bpftool", "-j", "map", "dump", "pinned", str(map_pin)],
    )
    return sum_per_cpu(dump)


def _bytes_of(hex_bytes: list[str]) -> bytes:
    return bytes(int(b, 16) for b in hex_bytes)
