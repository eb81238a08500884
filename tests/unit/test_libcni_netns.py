"""Namespace file descriptors, using only this process's own namespace and regular
files: nothing here creates a namespace or enters another one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from libcni import netns
from libcni.errors import Code, InvalidEnvironment

OWN = "/proc/self/ns/net"


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def regular_file(tmp_path: Path) -> Path:
    path = tmp_path / "not-a-netns"
    path.write_text("")
    return path


@pytest.fixture
def own_fd() -> Iterator[int]:
    fd = os.open(OWN, os.O_RDONLY | os.O_CLOEXEC)
    yield fd
    os.close(fd)


def test_is_netns_of_our_own_namespace(own_fd: int) -> None:
    assert netns.is_netns(own_fd)


def test_is_netns_of_a_regular_file(regular_file: Path) -> None:
    fd = os.open(regular_file, os.O_RDONLY)
    try:
        assert not netns.is_netns(fd)
    finally:
        os.close(fd)


def test_is_netns_of_another_namespace_type() -> None:
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        assert not netns.is_netns(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("kind", "why"),
    [("empty", "empty"), ("missing", "failed to open"), ("regular", "not a network")],
)
def test_open_netns_refuses_naming_the_variable(
    tmp_path: Path, regular_file: Path, kind: str, why: str
) -> None:
    path = {
        "empty": "",
        "missing": str(tmp_path / "gone"),
        "regular": str(regular_file),
    }
    before = open_fds()
    with pytest.raises(InvalidEnvironment) as info:
        netns.open_netns(path[kind])
    assert info.value.code == Code.INVALID_ENVIRONMENT
    assert "CNI_NETNS" in info.value.msg and why in info.value.msg
    assert open_fds() == before
    assert not (tmp_path / "gone").exists()


def test_open_netns_if_present_of_our_own_namespace() -> None:
    fd = netns.open_netns_if_present(OWN)
    assert fd is not None
    try:
        assert netns.is_netns(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["empty", "missing", "under-a-file", "regular"])
def test_open_netns_if_present_reads_gone_as_none(
    tmp_path: Path, regular_file: Path, kind: str
) -> None:
    path = {
        "empty": "",
        "missing": str(tmp_path / "gone"),
        "under-a-file": str(regular_file / "x"),
        "regular": str(regular_file),
    }
    before = open_fds()
    assert netns.open_netns_if_present(path[kind]) is None
    assert open_fds() == before
    assert not (tmp_path / "gone").exists()


def test_entered_with_a_non_namespace_fd_raises_and_leaks_nothing(
    regular_file: Path,
) -> None:
    home = os.stat("/proc/thread-self/ns/net").st_ino
    fd = os.open(regular_file, os.O_RDONLY)
    try:
        before = open_fds()
        with pytest.raises(OSError), netns.entered(fd):
            pytest.fail("the block ran outside the requested namespace")
        assert open_fds() == before
    finally:
        os.close(fd)
    assert os.stat("/proc/thread-self/ns/net").st_ino == home


@pytest.mark.skipif(
    os.geteuid() != 0, reason="setns needs CAP_SYS_ADMIN, even into our own namespace"
)
def test_entered_our_own_namespace_comes_back(own_fd: int) -> None:
    home = os.stat("/proc/thread-self/ns/net").st_ino
    before = open_fds()
    with pytest.raises(RuntimeError, match="inside"), netns.entered(own_fd):
        assert os.stat("/proc/thread-self/ns/net").st_ino == home
        raise RuntimeError("inside")
    assert os.stat("/proc/thread-self/ns/net").st_ino == home
    assert open_fds() == before
