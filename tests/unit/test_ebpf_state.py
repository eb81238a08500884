"""State records: escaping keeps every container id inside its network directory."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from libcni.records import escape
from mycni_ebpf_redirect.state import Record, Store


@given(st.text(min_size=1, max_size=80))
def test_escape_is_one_safe_component(part: str) -> None:
    escaped = escape(part)
    assert "/" not in escaped
    assert "." not in escaped
    assert escaped not in ("", ".", "..")
    assert "\0" not in escaped


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_escape_is_injective(a: str, b: str) -> None:
    assert (escape(a) == escape(b)) == (a == b)


def test_path_stays_in_network_directory(tmp_path: Path) -> None:
    store = Store.for_network(tmp_path, "net1")
    path = store.path("../../etc/passwd", "eth0")
    assert path.parent == tmp_path / "net1"
    assert path.name == "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd.eth0.json"


def record(container_id: str = "c1") -> Record:
    return Record(
        container_id=container_id,
        ifname="eth0",
        host_veth="veth1234",
        host_ifindex=7,
        pod_mac="02:00:00:00:00:03",
        ips=(IPv4Address("10.1.0.3"),),
        priority=1,
    )


def test_save_load_remove(tmp_path: Path) -> None:
    store = Store.for_network(tmp_path, "net1")
    store.save(record())
    assert store.load("c1", "eth0") == record()
    assert store.load("c2", "eth0") is None
    store.remove_quietly("c1", "eth0")
    store.remove_quietly("c1", "eth0")
    assert store.load("c1", "eth0") is None
    assert list((tmp_path / "net1").iterdir()) == []


def test_mode_round_trips_and_old_records_are_of_the_fast_path(tmp_path: Path) -> None:
    from dataclasses import replace

    store = Store.for_network(tmp_path, "net1")
    fallen = replace(record(), mode="stack", reason="kernel said no", overlay="")
    store.save(fallen)
    assert store.load("c1", "eth0") == fallen

    old = record("c2").to_dict()
    for key in ("mode", "reason", "attach", "overlay"):
        del old[key]
    store.records.save("c2", "eth0", old)
    loaded = store.load("c2", "eth0")
    assert loaded is not None and (loaded.mode, loaded.attach) == ("fast", "tc")


def test_a_dual_stack_record_round_trips(tmp_path: Path) -> None:
    from dataclasses import replace

    store = Store.for_network(tmp_path, "net1")
    both = replace(record(), ips=(IPv4Address("10.1.0.3"), IPv6Address("fd00::3")))
    store.save(both)
    assert store.load("c1", "eth0") == both
