"""Fixtures for tests that run the plugins in namespaces, the `root` marker's skip
rule, and a session check that nothing was left behind on the machine.

`@pytest.mark.root` needs root, `ip`/`nsenter`, build/cnidriver and every executable
in build/bin; `@pytest.mark.root(plugins=("vxlan",))` narrows the executables needed
(`plugins=()` for tests of the reference plugins only). With CI=true a root test that
cannot run is an error, not a skip: CI builds everything, so a skip there hides a bug.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import cluster
from tests import testbed as tb

# Outside the testbed's own directories, where a plugin that ignores its config would
# leave state: libcni's default cache and host-local's default dataDir.
DEFAULT_CNI_STATE = Path("/var/lib/cni")
BPFFS = Path("/sys/fs/bpf")


def missing_for_root(plugins: tuple[str, ...]) -> list[str]:
    """Why a root test cannot run here; empty when it can."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append(f"needs root (euid is {os.geteuid()})")
    for tool in ("ip", "nsenter", "ping"):
        if shutil.which(tool) is None:
            reasons.append(f"{tool} not found in PATH")
    if not os.access(tb.DRIVER, os.X_OK):
        reasons.append(f"{tb.DRIVER} missing: run `make driver`")
    for name in plugins:
        if not os.access(tb.BUILD_BIN / name, os.X_OK):
            reasons.append(f"{tb.BUILD_BIN / name} missing: run `make build`")
    return reasons


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("root")
    if marker is None:
        return
    plugins = tuple(marker.kwargs.get("plugins", tb.PLUGIN_EXECUTABLES))
    reasons = missing_for_root(plugins)
    if not reasons:
        return
    text = "; ".join(reasons)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and a root test cannot run: {text}", pytrace=False)
    pytest.skip(text)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Remember each phase's outcome so fixtures can tell a passed test in teardown.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# --- the session leak check -----------------------------------------------------


ROOT_LINKS = "root-namespace link"


class Snapshot:
    """What a test session could leave behind on this machine, by kind."""

    def __init__(self) -> None:
        self.kinds: dict[str, set[str]] = {
            "network namespace": tb.list_netns() if shutil.which("ip") else set(),
            ROOT_LINKS: tb.list_links() if shutil.which("ip") else set(),
            "bpffs file": files_under(BPFFS) if is_bpffs(BPFFS) else set(),
            "test state": files_under(tb.STATE_ROOT),
            "default CNI state": files_under(DEFAULT_CNI_STATE),
        }

    def added_since(self, before: Snapshot) -> list[tuple[str, str]]:
        return [
            (kind, item)
            for kind, items in self.kinds.items()
            for item in sorted(items - before.kinds[kind])
        ]


def files_under(root: Path) -> set[str]:
    """Paths below root, relative to it; empty when root is missing or unreadable."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(str(Path(dirpath, name).relative_to(root)))
    return found


def is_bpffs(path: Path) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(
            fields[1] == str(path) and fields[2] == "bpf"
            for fields in (line.split() for line in mounts)
        )


@pytest.fixture(scope="session")
def session_prefix() -> str:
    """Prefix of every testbed of this session, telling our objects from those of
    other sessions running on the same machine at the same time."""
    return f"mycni-{secrets.token_hex(3)}-"


SUSPECTS = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(
    session_prefix: str, pytestconfig: pytest.Config
) -> Iterator[None]:
    """Fail the session when it left namespaces, root links, pins or CNI state.

    Named after this session's testbeds, or a root-namespace link (nothing may make
    one), is a leak. Anything else new may belong to another test run on the same
    machine: a leak with CI=true, where nothing else runs, and otherwise listed in
    the summary as a suspect.
    """
    before = Snapshot()
    yield
    after = Snapshot()

    leaked: list[str] = []
    suspects: list[str] = []
    for kind, item in after.added_since(before):
        ours = item.split("/", 1)[0].startswith(session_prefix)
        strict = ours or kind == ROOT_LINKS or os.environ.get("CI") == "true"
        (leaked if strict else suspects).append(f"{kind}: {item}")
    pytestconfig.stash[SUSPECTS] = suspects
    if leaked:
        pytest.fail(
            "the test session left things behind:\n  " + "\n  ".join(leaked),
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    suspects = terminalreporter.config.stash.get(SUSPECTS, [])
    if suspects:
        terminalreporter.section("possibly left behind (or another run's)")
        for line in suspects:
            terminalreporter.write_line(line)


# --- testbed fixtures -----------------------------------------------------------


@pytest.fixture(scope="session")
def testbed_names(session_prefix: str) -> Iterator[str]:
    return (f"{session_prefix}{n}" for n in itertools.count())


@pytest.fixture
def testbed(
    request: pytest.FixtureRequest, testbed_names: Iterator[str]
) -> Iterator[tb.Testbed]:
    """A fresh two-node testbed; a test that passed must also have left no IPAM
    reservation or cached result behind (every ADD has its DEL)."""
    if request.node.get_closest_marker("root") is None:
        pytest.fail("a test using the testbed needs @pytest.mark.root", pytrace=False)
    with tb.Testbed(name=next(testbed_names)) as bed:
        yield bed
        leftovers = bed.leftover_state()
    report = getattr(request.node, "report_call", None)
    if leftovers and report is not None and report.passed:
        pytest.fail(
            "the test left state behind:\n  " + "\n  ".join(leftovers), pytrace=False
        )


@pytest.fixture
def driver(testbed: tb.Testbed) -> tb.Driver:
    """The CNI driver of node 1 of `testbed`."""
    return testbed.node1.driver


@contextmanager
def full_chain(
    testbed: tb.Testbed, overrides: dict[str, Any] | None = None, **kw: Any
) -> Iterator[cluster.Network]:
    """mycni-full on `testbed`; every pod still attached at the end is DELeted
    through libcni."""
    net = cluster.Network(testbed, "mycni-full", overrides or {}, **kw)
    try:
        yield net
    finally:
        net.delete_all()


@pytest.fixture(params=["tcx", "tc"])
def any_chain(
    testbed: tb.Testbed, request: pytest.FixtureRequest
) -> Iterator[cluster.Network]:
    """`chain` once with each attach mode of ebpf-redirect (tcx is what "auto"
    picks on this kernel; tc is the clsact fallback of kernels before 6.6)."""
    with full_chain(testbed, {"ebpf-redirect.attachMode": request.param}) as net:
        yield net


@pytest.fixture
def tc_chain(testbed: tb.Testbed) -> Iterator[cluster.Network]:
    """`chain` with ebpf-redirect on clsact filters, for what only tc has: prefs."""
    with full_chain(testbed, {"ebpf-redirect.attachMode": "tc"}) as net:
        yield net


@pytest.fixture
def chain(testbed: tb.Testbed) -> Iterator[cluster.Network]:
    """The full chain (vxlan, mycni-ipam, ebpf-redirect) on `testbed`."""
    with full_chain(testbed) as net:
        yield net


@pytest.fixture
def dual(testbed: tb.Testbed) -> Iterator[cluster.Network]:
    """`chain` with an IPv4 and an IPv6 pod subnet on every node."""
    with full_chain(testbed, dual_stack=True) as net:
        yield net
