"""podman, with its CNI backend, runs busybox containers on mycni's full chain.

podman runs under `nsenter --net=<node>`, so the host side of every container (veths,
the VXLAN device, routes, pins) lives in a testbed node, never the root namespace.
Its storage, run state, locks, network configs, plugin search path, runc state and
cgroups are all test-owned; what podman 4.3 still writes to fixed machine paths (the
libcni result cache, the image blob-info cache) is removed again when the test made it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import cluster
from tests import testbed as tb

IMAGE = "localhost/mycni-busybox:test"
BUSYBOX = Path("/bin/busybox")  # busybox-static: runs with no libraries in the image
RUNC = "runc"
# Limits podman can set on this machine kind (see /work/shared/NOTES.md).
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1000:1000")
# Fixed paths podman 4.3 writes whatever its flags say: libcni's default result cache
# (its CNI backend passes no cache directory) and containers/image's blob-info cache
# (written by `podman import` for root). Deepest first, so parents empty out.
MACHINE_PATHS = (
    Path("/var/lib/cni/results"),
    Path("/var/lib/cni"),
    Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"),
    Path("/var/lib/containers/cache"),
    Path("/var/lib/containers"),
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
SETTLE = 20.0  # seconds for conmon and its cleanup process to finish after `rm`


def missing_tools() -> list[str]:
    reasons = [
        f"{tool} not found in PATH: apt-get install podman runc"
        for tool in ("podman", RUNC, "conmon")
        if shutil.which(tool) is None
    ]
    if not os.access(BUSYBOX, os.X_OK):
        reasons.append(f"{BUSYBOX} missing: apt-get install busybox-static")
    return reasons


@pytest.fixture
def tools() -> None:
    reasons = missing_tools()
    if not reasons:
        return
    text = "; ".join(reasons)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the podman test cannot run: {text}", pytrace=False)
    pytest.skip(text)


# --- processes, mounts and cgroups podman leaves to its caller ---------------------


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a process from a later one with its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def pids_mentioning(text: str) -> set[int]:
    """Processes whose command line contains text (conmon and podman name our dirs)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.add(int(entry.name))
    return found


def mounts_under(root: Path) -> list[str]:
    """Mount points below root, deepest first."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return sorted((p for p in points if p.startswith(f"{root}/")), reverse=True)


def remove_cgroup_quietly(parent: str) -> None:
    """Remove the cgroup `parent` and its children from every hierarchy (v1 and v2)."""
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / parent
        if not top.is_dir():
            continue
        dirs = [Path(d) for d, _, _ in os.walk(top)]
        for directory in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()


def remove_created_quietly(existed: dict[Path, bool]) -> None:
    """Remove those MACHINE_PATHS that did not exist before; a directory only when
    empty, so another user's files there stop the removal."""
    for path in MACHINE_PATHS:
        if existed[path]:
            continue
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()
            elif path.exists():
                path.unlink()


# --- podman -----------------------------------------------------------------------


@dataclass
class Container:
    name: str
    id: str
    ip: str
    pid: int  # of the container's first process, as seen from here
    pid_start: int | None
    netns: str  # the network namespace podman made, under /run/netns

    def host_veth(self, node: tb.Node) -> str | None:
        """The node's route to this container names its host veth."""
        for route in cluster.node_routes(node):
            parts = route.split()
            if parts[0] == self.ip and "dev" in parts:
                return parts[parts.index("dev") + 1]
        return None


@dataclass
class Podman:
    """podman in a node namespace with every piece of its state under `top`."""

    node: tb.Node
    top: Path
    network: str
    cgroup_parent: str
    containers: list[Container] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.top / "containers.conf"

    @property
    def net_dir(self) -> Path:
        return self.top / "net.d"

    @property
    def runtime(self) -> Path:
        return self.top / "bin" / RUNC

    def env(self) -> dict[str, str]:
        # TMPDIR: where `podman import` stages the layer (default /var/tmp).
        return dict(os.environ, CONTAINERS_CONF=str(self.conf), TMPDIR=str(self.top))

    def argv(self, args: Sequence[str]) -> list[str]:
        return [
            "podman",
            "--root",
            str(self.top / "root"),
            "--runroot",
            str(self.top / "run"),
            "--tmpdir",
            str(self.top / "tmp"),
            "--storage-driver",
            "vfs",  # plain directories: no overlay mounts to leak
            "--network-backend",
            "cni",
            "--network-config-dir",
            str(self.net_dir),
            "--runtime",
            str(self.runtime),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
            *args,
        ]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return tb.run_in(
            self.node, self.argv(args), check=check, timeout=timeout, env=self.env()
        )

    def setup(self, conflist: dict[str, Any]) -> None:
        """Write the config, the runc wrapper and the network; import the image."""
        for sub in ("bin", "net.d", "runc", "tmp", "rootfs/bin"):
            (self.top / sub).mkdir(parents=True)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        plugin_dirs = json.dumps([str(d) for d in tb.DEFAULT_CNI_PATH])
        # conmon_env_vars: conmon runs `podman container cleanup` when a container
        # exits; it must see this config (our plugin dirs) and a PATH with tc.
        conmon_env = json.dumps([f"PATH={path}", f"CONTAINERS_CONF={self.conf}"])
        self.conf.write_text(
            "[engine]\n"
            'lock_type = "file"\n'  # locks under --tmpdir, not /dev/shm/libpod_lock
            'events_logger = "none"\n'
            f"conmon_env_vars = {conmon_env}\n"
            "[network]\n"
            'network_backend = "cni"\n'
            f'network_config_dir = "{self.net_dir}"\n'
            f"cni_plugin_dirs = {plugin_dirs}\n"
        )
        # podman does not pass --runtime-flag to the cleanup it leaves to conmon, so
        # runc's state root (default /run/runc) is set by a wrapper instead.
        runc = shutil.which(RUNC)
        self.runtime.write_text(
            f'#!/bin/sh\nexec {runc} --root {self.top / "runc"} "$@"\n'
        )
        self.runtime.chmod(0o755)
        (self.net_dir / "mycni.conflist").write_text(json.dumps(conflist))
        self.import_busybox()

    def import_busybox(self) -> None:
        rootfs = self.top / "rootfs"
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        applets = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (rootfs / "bin" / applet).symlink_to("busybox")
        tar = self.top / "busybox.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        self("import", str(tar), IMAGE)

    def run(self, name: str) -> Container:
        """Start a container that sleeps, on the mycni network; record it first."""
        out = self(
            "run",
            "-d",
            "--name",
            name,
            "--network",
            self.network,
            "--cgroup-parent",
            f"/{self.cgroup_parent}",
            "--pull",
            "never",
            *ULIMITS,
            IMAGE,
            "sleep",
            "3600",
        ).stdout
        cid = out.strip().splitlines()[-1]
        info = self.inspect(cid)
        settings = info["NetworkSettings"]
        container = Container(
            name=name,
            id=cid,
            ip=settings["Networks"][self.network]["IPAddress"],
            pid=int(info["State"]["Pid"]),
            pid_start=start_time(int(info["State"]["Pid"])),
            netns=settings["SandboxKey"],
        )
        self.containers.append(container)
        return container

    def inspect(self, cid: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self("inspect", cid).stdout)
        return data[0]

    def exec(
        self, container: Container, *argv: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self("exec", container.id, *argv, check=check)

    def remove(self, container: Container) -> None:
        """`podman rm -f`, then wait until conmon and its cleanup have exited."""
        self("rm", "-f", "-t", "0", container.id)
        self.containers.remove(container)
        self.wait_for_processes()

    def wait_for_processes(self, timeout: float = SETTLE) -> set[int]:
        """Wait for every process naming our directory (conmon, podman cleanup) to
        exit; return those still there."""
        deadline = time.monotonic() + timeout
        while (left := pids_mentioning(str(self.top))) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def close(self) -> None:
        """Remove containers, processes, mounts, namespaces, cgroups and files we
        made; every step runs even if one before it fails."""
        with contextlib.ExitStack() as undo:
            undo.callback(shutil.rmtree, self.top, ignore_errors=True)
            undo.callback(remove_cgroup_quietly, self.cgroup_parent)
            undo.callback(self.unmount_all)
            for container in self.containers:
                undo.callback(tb.delete_netns_quietly, Path(container.netns).name)
            undo.callback(self.kill_stragglers)
            for container in list(self.containers):
                undo.callback(self, "rm", "-f", "-t", "0", container.id, check=False)

    def kill_stragglers(self) -> None:
        """SIGKILL, by PID, what `rm` left running: containers we recorded, then
        processes that name our directory (conmon, podman, started by this test)."""
        left = self.wait_for_processes()
        for container in self.containers:
            alive = start_time(container.pid)
            if alive is not None and alive == container.pid_start:
                os.kill(container.pid, signal.SIGKILL)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.wait_for_processes(timeout=5.0)

    def unmount_all(self) -> None:
        for point in mounts_under(self.top):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@pytest.fixture
def podman(tools: None, testbed: tb.Testbed) -> Iterator[Podman]:
    node = testbed.node1
    existed = {path: path.exists() for path in MACHINE_PATHS}
    conflist_path = cluster.render(testbed, node, "mycni-full")
    conflist = json.loads(conflist_path.read_text())
    # Short and under /tmp: conmon's attach sockets must fit in 108 bytes.
    top = Path(tempfile.mkdtemp(prefix=f"{testbed.name}-pm", dir="/tmp"))
    pm = Podman(node, top, conflist["name"], cgroup_parent=top.name)
    try:
        pm.setup(conflist)
        yield pm
    finally:
        try:
            pm.close()
        finally:
            remove_created_quietly(existed)


def assert_gone(podman: Podman, container: Container, veth: str) -> None:
    node = podman.node
    assert not [lease for lease in cluster.leases(node) if container.id in lease]
    assert veth not in tb.list_links(node.name)
    assert not [r for r in cluster.node_routes(node) if r.split()[0] == container.ip]
    assert container.ip not in cluster.endpoints(node)
    assert not Path(container.netns).exists()
    assert not list(Path("/var/lib/cni/results").glob(f"*{container.id}*"))


@pytest.mark.root
def test_two_containers_get_addresses_reach_each_other_and_rm_removes_all(
    podman: Podman, testbed: tb.Testbed
) -> None:
    node = podman.node
    a, b = podman.run("a"), podman.run("b")
    subnet = cluster.pod_subnet(testbed, node)

    leases = {(lease[2], lease[3]) for lease in cluster.leases(node)}
    assert {(a.ip, a.id), (b.ip, b.id)} <= leases and a.ip != b.ip
    assert all(str(ip) in {a.ip, b.ip} for ip, _ in leases)
    assert all(ipaddress.ip_address(c.ip) in subnet for c in (a, b))
    veths = {c.name: c.host_veth(node) for c in (a, b)}
    assert None not in veths.values()
    assert set(veths.values()) == cluster.host_links(node)
    assert not set(veths.values()) & tb.list_links()  # nothing in the root namespace
    assert cluster.endpoints(node) == {
        c.ip: cluster.ifindex(node, str(veths[c.name])) for c in (a, b)
    }
    assert (
        f"inet {a.ip}/24" in podman.exec(a, "ip", "-4", "addr", "show", "eth0").stdout
    )

    ping = podman.exec(a, "ping", "-c", "3", "-W", "2", b.ip, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert nc_exchange(podman, server=b, client=a) == f"hello from {b.name}"

    podman.remove(a)
    assert_gone(podman, a, str(veths["a"]))
    assert b.ip in cluster.endpoints(node)  # the other container is untouched
    assert [lease for lease in cluster.leases(node) if b.id in lease]
    podman.remove(b)
    assert_gone(podman, b, str(veths["b"]))
    assert cluster.leases(node) == [] and cluster.host_links(node) == set()
    assert cluster.endpoints(node) == {}


def nc_exchange(podman: Podman, server: Container, client: Container) -> str:
    """busybox nc: one line from a listener in `server` to a client in `client`."""
    port = "7777"
    podman(
        "exec",
        "-d",
        server.id,
        "sh",
        "-c",
        f"echo 'hello from {server.name}' | nc -l -p {port}",
    )
    for _ in range(20):  # until the listener is up
        got = podman.exec(client, "nc", "-w", "2", server.ip, port, check=False)
        if got.returncode == 0 and got.stdout.strip():
            return got.stdout.strip()
        time.sleep(0.2)
    return ""
