"""Configuration keys of ebpf-redirect and their defaults."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from libcni.errors import InvalidConfig
from mycni_ebpf_redirect.config import EbpfConf, default_object_dir


def test_defaults() -> None:
    conf = EbpfConf.from_config({"name": "net1"})
    assert conf.pin_root == Path("/sys/fs/bpf/mycni")
    assert conf.object_dir == Path("/opt/mycni/bpf")
    assert conf.priority == 1
    assert conf.state_dir == Path("/var/lib/cni/mycni-ebpf")


def test_frozen_object_dir_is_next_to_the_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    exe = tmp_path / "build" / "dist" / "mycni" / "ebpf-redirect"
    exe.parent.mkdir(parents=True)
    exe.touch()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(exe))
    assert default_object_dir() == tmp_path / "build" / "bpf"


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"priority": 0}, "priority"),
        ({"priority": 65536}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": "1"}, "priority"),
        ({"pinRoot": "relative/dir"}, "pinRoot"),
        ({"pinRoot": "/sys/fs/bpf/../x"}, "pinRoot"),
        ({"stateDir": ""}, "stateDir"),
        ({"bpfObjectDir": 5}, "bpfObjectDir"),
    ],
    ids=["prio-0", "prio-too-big", "prio-bool", "prio-string", "relative-pins",
         "dotdot-pins", "empty-state", "number-objdir"],
)  # fmt: skip
def test_invalid_values_are_named(config: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        EbpfConf.from_config({"name": "net1", **config})
    assert info.value.msg.startswith(f"{where}: ")


def test_overlay_and_fast_path_defaults_and_values() -> None:
    conf = EbpfConf.from_config({"name": "net1"})
    assert (conf.vxlan_device, conf.fast_path) == (None, True)
    conf = EbpfConf.from_config(
        {"name": "net1", "vxlanDevice": "vx-blue", "fastPath": False}
    )
    assert (conf.vxlan_device, conf.fast_path) == ("vx-blue", False)
    assert EbpfConf.from_config({"name": "n", "vxlanDevice": ""}).vxlan_device == ""


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"vxlanDevice": "a-name-too-long-x"}, "vxlanDevice"),
        ({"vxlanDevice": "eth/0"}, "vxlanDevice"),
        ({"vxlanDevice": 42}, "vxlanDevice"),
        ({"fastPath": "false"}, "fastPath"),
        ({"fastPath": 0}, "fastPath"),
    ],
    ids=["dev-16-chars", "dev-slash", "dev-number", "fast-string", "fast-int"],
)
def test_invalid_overlay_and_mode_values_are_named(
    config: dict[str, Any], where: str
) -> None:
    with pytest.raises(InvalidConfig) as info:
        EbpfConf.from_config({"name": "net1", **config})
    assert info.value.msg.startswith(f"{where}: ")


def test_attach_mode_and_shaping_from_runtime_config() -> None:
    conf = EbpfConf.from_config({"name": "net1"})
    assert (conf.attach_mode, conf.shaped) == ("auto", False)
    for mode in ("auto", "tcx", "tc"):
        assert (
            EbpfConf.from_config({"name": "n", "attachMode": mode}).attach_mode == mode
        )
    limits = [({"ingressRate": 1000}, True), ({"egressRate": 8}, True),
              ({"ingressRate": 0, "egressRate": 0}, False), ({}, False)]  # fmt: skip
    for bandwidth, shaped in limits:
        runtime = {"runtimeConfig": {"bandwidth": bandwidth}}
        assert EbpfConf.from_config({"name": "n", **runtime}).shaped is shaped


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"attachMode": "xdp"}, "attachMode"),
        ({"attachMode": None}, "attachMode"),
        ({"runtimeConfig": {"bandwidth": [1]}}, "runtimeConfig.bandwidth"),
        ({"runtimeConfig": {"bandwidth": {"egressRate": "1M"}}},
         "runtimeConfig.bandwidth.egressRate"),
        ({"runtimeConfig": {"bandwidth": {"ingressRate": -1}}},
         "runtimeConfig.bandwidth.ingressRate"),
    ],
    ids=["mode-xdp", "mode-null", "bw-list", "bw-string-rate", "bw-negative"],
)  # fmt: skip
def test_invalid_attach_mode_and_bandwidth_are_named(
    config: dict[str, Any], where: str
) -> None:
    with pytest.raises(InvalidConfig) as info:
        EbpfConf.from_config({"name": "net1", **config})
    assert info.value.msg.startswith(f"{where}: ")
