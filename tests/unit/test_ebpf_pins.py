"""Where each layout version keeps its pins, and which older layouts ADD migrates."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from mycni_ebpf_redirect.pins import LAYOUT_VERSION, MAP_SHAPES, Pins, older_layouts


def test_current_layout_is_under_its_version_directory() -> None:
    pins = Pins(Path("/pins"))
    assert pins.ep4 == Path(f"/pins/v{LAYOUT_VERSION}/maps/mycni_ep4")
    assert pins.program == Path(f"/pins/v{LAYOUT_VERSION}/progs/from_pod")


def test_version_1_is_flat_under_the_pin_root() -> None:
    assert Pins(Path("/pins"), 1).ep4 == Path("/pins/maps/mycni_ep4")


def test_older_layouts_are_found_and_the_current_one_is_not(tmp_path: Path) -> None:
    assert older_layouts(tmp_path / "missing") == []
    (tmp_path / f"v{LAYOUT_VERSION}" / "maps").mkdir(parents=True)
    (tmp_path / f"staging-{LAYOUT_VERSION}").mkdir()  # a load in progress
    assert older_layouts(tmp_path) == []

    for name in ("maps", f"v{LAYOUT_VERSION + 1}", f"stale-v{LAYOUT_VERSION}"):
        (tmp_path / name).mkdir()
    found = older_layouts(tmp_path)
    assert [p.base for p in found] == [
        tmp_path,
        tmp_path / f"stale-v{LAYOUT_VERSION}",
        tmp_path / f"v{LAYOUT_VERSION + 1}",
    ]
    assert found[1].ep4 == tmp_path / f"stale-v{LAYOUT_VERSION}" / "maps/mycni_ep4"


def test_each_family_has_its_endpoint_map() -> None:
    pins = Pins(Path("/pins"))
    assert pins.endpoint_map(IPv4Address("10.1.0.3")) == pins.ep4
    assert pins.endpoint_map(IPv6Address("fd00::3")) == pins.ep6
    assert pins.ep6.name == "mycni_ep6" and pins.endpoint_maps == (pins.ep4, pins.ep6)
    assert MAP_SHAPES["mycni_ep6"] == (16, 16)


def test_layout_2_is_older_than_the_current_one(tmp_path: Path) -> None:
    """Layout 3 added mycni_ep6: a node upgraded from v2 must migrate."""
    assert LAYOUT_VERSION == 3
    (tmp_path / "v2" / "maps").mkdir(parents=True)
    assert [p.base for p in older_layouts(tmp_path)] == [tmp_path / "v2"]
