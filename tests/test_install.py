"""`make install`: the layout a node gets, and that the installed executables run as a
runtime runs them (through links in the CNI bin directory) and find their BPF objects
without being told where."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import cluster
from tests import testbed as tb


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("install")
    subprocess.run(
        [
            *("make", "--no-print-directory", "install", "DESTDIR="),
            *(f"PREFIX={root}/mycni", f"CNI_BIN={root}/cni-bin"),
        ],
        cwd=tb.REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return root


@pytest.mark.root
def test_install_layout(installed: Path) -> None:
    bin_dir = installed / "cni-bin"
    assert sorted(p.name for p in bin_dir.iterdir()) == [
        "ebpf-redirect",
        "mycni-ipam",
        "vxlan",
    ]
    for link in bin_dir.iterdir():
        assert link.resolve() == installed / "mycni" / "lib" / "mycni" / link.name
    assert (installed / "mycni" / "bpf" / "from_pod.bpf.o").is_file()


@pytest.mark.root
def test_installed_chain_runs_from_the_cni_bin_directory(
    installed: Path, testbed: tb.Testbed
) -> None:
    node = testbed.node1
    driver = tb.Driver(
        node.name, node.cache_dir, cni_path=(installed / "cni-bin",), timeout=90
    )
    conflist = cluster.render(testbed, node, "mycni-full")
    assert "bpfObjectDir" not in conflist.read_text()
    pods = [testbed.add_pod("inst") for _ in range(2)]
    results = []
    try:
        for i, pod in enumerate(pods):
            results.append(driver.add(conflist, pod, f"inst-{i}"))
        peer = results[1]["ips"][0]["address"].split("/")[0]
        before = cluster.stats(node)["REDIRECTED"]
        assert tb.ping(pods[0].name, peer, count=3)
        assert cluster.stats(node)["REDIRECTED"] - before >= 6
    finally:
        for i, pod in enumerate(pods[: len(results)]):
            driver.delete(conflist, pod, f"inst-{i}")
