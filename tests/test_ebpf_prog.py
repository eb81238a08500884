"""from_pod verdicts on crafted frames through BPF_PROG_TEST_RUN (bpftool prog run)."""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mycni_ebpf_redirect import maps, program
from mycni_ebpf_redirect.bpfobj import FROM_OVERLAY
from mycni_ebpf_redirect.counters import Stat
from mycni_ebpf_redirect.pins import LAYOUT_VERSION, Pins
from tests.ebpf_fixtures import (  # noqa: F401  (fixtures)
    ARP_FRAME,
    BPF_SRC,
    ScratchNode,
    compile_bpf,
    from_pod_object,
    ipv4_checksum,
    ipv4_frame,
    scratch_node,
)

pytestmark = pytest.mark.root(plugins=())

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
POD_MAC = bytes.fromhex("020000000003")
HOST_MAC = bytes.fromhex("020000000004")


@pytest.fixture
def pins(scratch_node: ScratchNode, from_pod_object: Path) -> Pins:  # noqa: F811
    pins = Pins(scratch_node.pin_root)
    program.ensure_loaded(pins, from_pod_object)
    maps.put_endpoint(
        pins.ep4, IPv4Address("10.1.0.3"), maps.Endpoint(5, POD_MAC, HOST_MAC)
    )
    return pins


def run_prog(
    pins: Pins, frame: bytes, tmp: Path, pin: Path | None = None
) -> tuple[int, bytes]:
    (tmp / "in.bin").write_bytes(frame)
    out = subprocess.run(
        ["bpftool", "-j", "prog", "run", "pinned", str(pin or pins.program),
         "data_in", str(tmp / "in.bin"), "data_out", str(tmp / "out.bin"),
         "repeat", "1"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return json.loads(out.stdout)["retval"], (tmp / "out.bin").read_bytes()


def test_local_pod_is_redirected_with_ttl_and_macs_rewritten(
    pins: Pins, tmp_path: Path
) -> None:
    frame = ipv4_frame("10.1.0.2", "10.1.0.3", ttl=64)
    verdict, out = run_prog(pins, frame, tmp_path)
    assert verdict == TC_ACT_REDIRECT
    assert out[0:6] == POD_MAC and out[6:12] == HOST_MAC
    assert out[14 + 8] == 63
    assert ipv4_checksum(out[14:34]) == 0, "header checksum no longer adds up"
    assert out[34:] == frame[34:]
    assert maps.read_stats(pins.stats)[Stat.REDIRECTED] == 1


@pytest.mark.parametrize(
    "frame",
    [
        ipv4_frame("10.1.0.2", "10.1.0.99"),
        ipv4_frame("10.1.0.2", "10.1.0.3", ttl=1),
        ARP_FRAME,
    ],
    ids=["dst-not-local", "ttl-1-left-for-icmp", "arp"],
)
def test_passed_to_stack_unchanged(pins: Pins, tmp_path: Path, frame: bytes) -> None:
    verdict, out = run_prog(pins, frame, tmp_path)
    assert verdict == TC_ACT_OK
    assert out == frame
    stats = maps.read_stats(pins.stats)
    assert (stats[Stat.PASSED], stats[Stat.REDIRECTED]) == (1, 0)


def test_bad_header_length_is_dropped_and_counted(pins: Pins, tmp_path: Path) -> None:
    frame = bytearray(ipv4_frame("10.1.0.2", "10.1.0.3"))
    frame[14] = 0x44  # version 4, IHL 4 words: 16 bytes, below the minimum 20
    verdict, _ = run_prog(pins, bytes(frame), tmp_path)
    assert verdict == TC_ACT_SHOT
    assert maps.read_stats(pins.stats)[Stat.DROP_BAD_IHL] == 1


def test_kernel_refuses_test_run_of_truncated_ipv4(pins: Pins, tmp_path: Path) -> None:
    """Kernel 6.18's BPF_PROG_TEST_RUN rejects (EINVAL) an EtherType-IPv4 frame
    shorter than Ethernet + 20 bytes before the program runs (measured: 34 bytes
    run, 33 fail), so the DROP_TRUNCATED path is exercised by real traffic in
    test_ebpf_attach.py instead."""
    frame = ipv4_frame("10.1.0.2", "10.1.0.3")[:33]
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_prog(pins, frame, tmp_path)
    assert json.loads(info.value.stdout) == {
        "error": "failed to run program: Invalid argument"
    }


def test_reload_reuses_pinned_maps(pins: Pins, from_pod_object: Path) -> None:  # noqa: F811
    pins.program.unlink()
    program.ensure_loaded(pins, from_pod_object)
    assert IPv4Address("10.1.0.3") in maps.dump_endpoints(pins.ep4)
    assert sorted(p.name for p in pins.root.iterdir()) == [f"v{LAYOUT_VERSION}"]
    assert sorted(p.name for p in pins.base.iterdir()) == ["maps", "progs"]


# --- from_overlay: frames decapsulated by the VXLAN device ----------------------


@pytest.fixture(scope="session")
def from_overlay_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bpf") / "from_overlay.bpf.o"
    return compile_bpf(BPF_SRC / "from_overlay.bpf.c", out)


@pytest.fixture
def overlay_pins(pins: Pins, from_overlay_object: Path) -> Pins:
    program.ensure_loaded(pins, from_overlay_object, FROM_OVERLAY)
    return pins


def run_overlay(pins: Pins, frame: bytes, tmp: Path) -> tuple[int, bytes]:
    return run_prog(pins, frame, tmp, pins.overlay_program)


# PROG_TEST_RUN gives the frame the type eth_type_trans() finds on the loopback
# device, whose MAC is all zeroes: another destination MAC is PACKET_OTHERHOST, as a
# VXLAN device makes it of an inner frame not addressed to its own MAC.
OTHERHOST_DST = bytes.fromhex("0200000000aa")
HOST_DST = bytes(6)


@pytest.mark.parametrize(
    ("dst_mac", "fixed"),
    [(OTHERHOST_DST, 1), (HOST_DST, 0)],
    ids=["otherhost-set-to-host", "already-host"],
)
def test_overlay_frame_to_local_pod_is_redirected_as_packet_host(
    overlay_pins: Pins, tmp_path: Path, dst_mac: bytes, fixed: int
) -> None:
    frame = dst_mac + ipv4_frame("10.2.0.2", "10.1.0.3", ttl=63)[6:]
    verdict, out = run_overlay(overlay_pins, frame, tmp_path)
    assert verdict == TC_ACT_REDIRECT
    assert out[0:6] == POD_MAC and out[6:12] == HOST_MAC
    assert out[14 + 8] == 62 and ipv4_checksum(out[14:34]) == 0
    stats = maps.read_stats(overlay_pins.stats)
    assert stats[Stat.REDIRECTED_OVERLAY_IN] == 1 and stats[Stat.REDIRECTED] == 0
    # The kernel before 6.15 keeps PACKET_OTHERHOST through bpf_redirect_peer and
    # the pod's ip_rcv drops the frame: the program must have changed it.
    assert stats[Stat.PKT_TYPE_FIXED] == fixed


@pytest.mark.parametrize(
    "frame",
    [
        ipv4_frame("10.2.0.2", "10.1.0.99"),
        ipv4_frame("10.2.0.2", "10.1.0.3", ttl=1),
        ARP_FRAME,
    ],
    ids=["dst-not-local", "ttl-1-left-for-icmp", "arp"],
)
def test_overlay_frame_not_for_a_local_pod_is_passed_unchanged(
    overlay_pins: Pins, tmp_path: Path, frame: bytes
) -> None:
    verdict, out = run_overlay(overlay_pins, frame, tmp_path)
    assert (verdict, out) == (TC_ACT_OK, frame)
    stats = maps.read_stats(overlay_pins.stats)
    assert stats[Stat.PASSED] == 1 and stats[Stat.PKT_TYPE_FIXED] == 0


def test_both_programs_share_the_endpoint_and_counter_maps(overlay_pins: Pins) -> None:
    ids = set()
    for pin in (overlay_pins.program, overlay_pins.overlay_program):
        info = json.loads(subprocess.run(
            ["bpftool", "-j", "prog", "show", "pinned", str(pin)],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout)  # fmt: skip
        ids.add(frozenset(info["map_ids"]) - {info.get("btf_id")})
    from_pod_maps, from_overlay_maps = sorted(ids, key=len, reverse=True)
    assert from_overlay_maps < from_pod_maps
