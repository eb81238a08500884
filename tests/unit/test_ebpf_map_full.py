"""A full endpoint map is reported as MapFull naming the map, its size and its pin."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from libcni.errors import BpfFailure, Code
from mycni_ebpf_redirect.command import CommandFailed
from mycni_ebpf_redirect.maps import Fill, MapFull, full_map_error

PIN = Path("/sys/fs/bpf/mycni/v3/maps/mycni_ep4")
IP = IPv4Address("10.1.0.9")


def failed() -> CommandFailed:
    return CommandFailed(
        "failed to write endpoint 10.1.0.9: update failed: Argument list too long",
        255,
        details="bpftool map update ...",
    )


def test_new_key_in_a_full_map_is_map_full() -> None:
    err = full_map_error(failed(), IP, Fill(PIN, 4, 4, has_key=False))
    assert isinstance(err, MapFull) and isinstance(err, BpfFailure)
    assert err.code == Code.BPF_FAILURE
    assert err.msg.startswith("failed to write endpoint 10.1.0.9 to mycni_ep4: ")
    assert "(4 of max_entries 4)" in err.msg and str(PIN) in err.msg
    assert err.details == "bpftool map update ..."


@pytest.mark.parametrize(
    "fill",
    [
        Fill(PIN, 3, 4, has_key=False),
        Fill(PIN, 4, 4, has_key=True),
        None,
    ],
    ids=["room-left", "key-already-there", "map-unreadable"],
)
def test_other_failures_keep_the_tools_error(fill: Fill | None) -> None:
    assert full_map_error(failed(), IP, fill) is None


def test_a_full_ipv6_map_names_its_own_build_option() -> None:
    pin = PIN.with_name("mycni_ep6")
    err = full_map_error(failed(), IPv6Address("fd00::9"), Fill(pin, 4, 4, False))
    assert err is not None and "MYCNI_EP6_MAX_ENTRIES" in err.msg
    assert err.msg.startswith("failed to write endpoint fd00::9 to mycni_ep6: ")
