"""Throwaway two-node clusters in network namespaces, and the CNI driver that runs
plugins in them; shared by the plugin tests and the demo.

Nothing here touches the root network namespace: nodes and pods are namespaces named
after the testbed, the underlay is a veth created directly between the two nodes, and
teardown removes every namespace, mount and directory the testbed made.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BUILD_BIN = REPO / "build" / "bin"
DRIVER = REPO / "build" / "cnidriver"
REFERENCE_PLUGINS = Path("/usr/lib/cni")
CONFLISTS = REPO / "conflists"
# Repo-local (and git-ignored) so a leak is visible next to the code that caused it.
STATE_ROOT = REPO / "build" / "test-state"
NETNS_DIR = Path("/var/run/netns")

DEFAULT_CNI_PATH = (BUILD_BIN, REFERENCE_PLUGINS)
PLUGIN_EXECUTABLES = ("vxlan", "mycni-ipam", "ebpf-redirect")
# IPAM types whose "dataDir" the testbed points at a per-node directory.
FILE_IPAM_TYPES = frozenset({"host-local", "mycni-ipam"})
# Keys of a conflist itself; any other dotted override names a plugin type first.
CONFLIST_KEYS = frozenset(
    {"cniVersion", "cniVersions", "name", "disableCheck", "disableGC", "plugins"}
)
UNDERLAY = "underlay"
COMMAND_TIMEOUT = 30.0


class CommandFailed(Exception):
    """A command run in a namespace exited non-zero."""

    def __init__(self, argv: Sequence[str], proc: subprocess.CompletedProcess[str]):
        self.argv = list(argv)
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__(
            f"{' '.join(self.argv)} exited {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()}"
        )


class CniCommandError(Exception):
    """The driver reported a CNI error; `code` is the spec code (0: libcni itself)."""

    def __init__(
        self, command: str, code: int | None, msg: str, details: str, stderr: str
    ):
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        self.stderr = stderr
        text = f"cnidriver {command} failed with code {code}: {msg}"
        if details:
            text += f"; {details}"
        super().__init__(text)


# --- namespaces -----------------------------------------------------------------


def netns_path(ns: str) -> Path:
    return NETNS_DIR / ns


def run_in(
    ns: str | Namespace,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv in network namespace ns.

    nsenter rather than `ip netns exec`: the latter remounts /sys in a private mount
    namespace, which hides bpffs pins made outside it.
    """
    full = ["nsenter", f"--net={netns_path(ns_name(ns))}", "--", *argv]
    proc = subprocess.run(
        full,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandFailed(full, proc)
    return proc


def run(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run argv here: only `ip netns`, `ip -n NS`, mount and umount, which act on
    the testbed's own namespaces and directories, never the root network namespace."""
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise CommandFailed(argv, proc)
    return proc.stdout


def create_netns(name: str) -> Path:
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    return netns_path(name)


def delete_netns_quietly(name: str) -> None:
    """Delete a named namespace; a namespace already gone is fine."""
    if netns_path(name).exists():
        subprocess.run(
            ["ip", "netns", "delete", name],
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )


def list_netns() -> set[str]:
    """Names of the named network namespaces (`ip netns list`)."""
    out = run(["ip", "netns", "list"])
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def list_links(ns: str | Namespace | None = None) -> set[str]:
    """Link names in ns, or in the current namespace when ns is None."""
    argv = ["ip", "-j", "link", "show"]
    if ns is not None:
        argv[1:1] = ["-n", ns_name(ns)]
    return {link["ifname"] for link in json.loads(run(argv) or "[]")}


def link_info(ns: str | Namespace, ifname: str) -> dict[str, Any] | None:
    """`ip -d -j link show` of one link, or None when it does not exist."""
    proc = subprocess.run(
        ["ip", "-n", ns_name(ns), "-d", "-j", "link", "show", "dev", ifname],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        return None
    links: list[dict[str, Any]] = json.loads(proc.stdout)
    return links[0] if links else None


# --- conflists ------------------------------------------------------------------


def load_conflist(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A fresh copy of a conflist: a mapping, a file, or a name in conflists/."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    path = Path(source)
    if isinstance(source, str) and not path.suffix and "/" not in source:
        path = CONFLISTS / f"{source}.conflist"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def render_conflist(
    source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Load a conflist and apply dotted-path overrides.

    A key whose first part is a conflist key ("name", "cniVersion", ...) sets that key
    of the list; any other key starts with a plugin type and sets a key of every plugin
    of that type: {"vxlan.ipam.dataDir": "/x", "ebpf-redirect.pinRoot": "/y"}. Missing
    intermediate objects are created; a value of None deletes the key.
    """
    conflist = load_conflist(source)
    for key, value in (overrides or {}).items():
        head, _, rest = key.partition(".")
        if head in CONFLIST_KEYS:
            targets = [conflist]
            rest = key
        else:
            targets = [p for p in conflist.get("plugins", []) if p.get("type") == head]
            if not targets or not rest:
                raise KeyError(f"override {key!r}: no plugin of type {head!r}")
        for target in targets:
            set_path(target, rest.split("."), value)
    return conflist


def set_path(obj: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    if value is None:
        obj.pop(parts[-1], None)
    else:
        obj[parts[-1]] = copy.deepcopy(value)


# --- the driver -----------------------------------------------------------------


class Driver:
    """Runs build/cnidriver (our cnitool on the real libcni) inside a node namespace."""

    def __init__(
        self,
        node_ns: str,
        cache_dir: Path,
        cni_path: Sequence[Path] = DEFAULT_CNI_PATH,
        executable: Path = DRIVER,
        timeout: float = 90.0,  # above the driver's own 60 s, which kills plugins
    ):
        self.node_ns = node_ns
        self.cache_dir = cache_dir
        self.cni_path = tuple(cni_path)
        self.executable = executable
        self.timeout = timeout
        self.last_elapsed = 0.0  # seconds taken by the last command

    def add(
        self,
        conflist: Path | Mapping[str, Any],
        netns: str | Namespace,
        container_id: str,
        *,
        ifname: str = "eth0",
        args: Mapping[str, str] | None = None,
        capability_args: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """ADD and return the result, in the conflist's cniVersion."""
        out = self.call(
            "add", conflist, netns, container_id, ifname, args, capability_args
        )
        result: dict[str, Any] = json.loads(out)
        return result

    def check(
        self,
        conflist: Path | Mapping[str, Any],
        netns: str | Namespace,
        container_id: str,
        *,
        ifname: str = "eth0",
        args: Mapping[str, str] | None = None,
        capability_args: Mapping[str, Any] | None = None,
    ) -> None:
        self.call("check", conflist, netns, container_id, ifname, args, capability_args)

    def delete(
        self,
        conflist: Path | Mapping[str, Any],
        netns: str | Namespace | None,
        container_id: str,
        *,
        ifname: str = "eth0",
        args: Mapping[str, str] | None = None,
        capability_args: Mapping[str, Any] | None = None,
    ) -> None:
        """DEL; netns None sends an empty CNI_NETNS (the runtime lost the namespace)."""
        self.call("del", conflist, netns, container_id, ifname, args, capability_args)

    def version(self, plugin_type: str) -> dict[str, Any]:
        """The VERSION answer of one plugin, as libcni decodes it."""
        result: dict[str, Any] = json.loads(
            self.execute(["version", "--type", plugin_type], None, "version")
        )
        return result

    def call(
        self,
        command: str,
        conflist: Path | Mapping[str, Any],
        netns: str | Namespace | None,
        container_id: str,
        ifname: str,
        args: Mapping[str, str] | None,
        capability_args: Mapping[str, Any] | None,
    ) -> str:
        argv = [command, "--id", container_id, "--ifname", ifname]
        argv += ["--cache-dir", str(self.cache_dir)]
        argv += ["--netns", netns_arg(netns)]
        stdin = None
        if isinstance(conflist, Mapping):
            argv += ["--conflist", "-"]
            stdin = json.dumps(conflist)
        else:
            argv += ["--conflist", str(conflist)]
        if args:
            argv += ["--args", ";".join(f"{k}={v}" for k, v in args.items())]
        if capability_args is not None:
            argv += ["--capability-args", json.dumps(capability_args)]
        return self.execute(argv, stdin, command)

    def execute(self, argv: list[str], stdin: str | None, command: str) -> str:
        env = dict(os.environ)
        env["CNI_PATH"] = ":".join(str(p) for p in self.cni_path)
        start = time.monotonic()
        proc = run_in(
            self.node_ns,
            [str(self.executable), *argv],
            check=False,
            timeout=self.timeout,
            input=stdin,
            env=env,
        )
        self.last_elapsed = time.monotonic() - start
        if proc.returncode == 0:
            return proc.stdout
        try:
            err = json.loads(proc.stdout)
        except ValueError:
            err = {"msg": (proc.stdout + proc.stderr).strip()}
        raise CniCommandError(
            command,
            err.get("code"),
            err.get("msg", ""),
            err.get("details", ""),
            proc.stderr,
        )


def netns_arg(netns: str | Namespace | None) -> str:
    if netns is None:
        return ""
    if isinstance(netns, str):
        return netns if netns.startswith("/") else str(netns_path(netns))
    return str(netns.path)


# --- the testbed ----------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    name: str

    @property
    def path(self) -> Path:
        return netns_path(self.name)

    def run(
        self, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return run_in(self.name, argv, **kwargs)


@dataclass(frozen=True)
class Node:
    """A node namespace, its underlay address and its private on-disk state.

    `pin_root` is a bpffs mounted for this node alone, so pins cannot collide with
    another node, testbed or developer, and unmounting it frees every pin.
    """

    name: str
    index: int
    address: ipaddress.IPv4Interface
    state_dir: Path
    underlay: str = UNDERLAY

    @property
    def path(self) -> Path:
        return netns_path(self.name)

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def ipam_dir(self) -> Path:
        return self.state_dir / "ipam"

    @property
    def pin_root(self) -> Path:
        return self.state_dir / "bpf"

    @property
    def driver(self) -> Driver:
        return Driver(self.name, self.cache_dir)

    def run(
        self, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return run_in(self.name, argv, **kwargs)

    def render_conflist(
        self,
        source: str | Path | Mapping[str, Any],
        overrides: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """render_conflist with this node's state filled in before the overrides:
        dataDir of file-backed IPAM sections and pinRoot of ebpf-redirect plugins."""
        conflist = load_conflist(source)
        for plugin in conflist.get("plugins", []):
            ipam = plugin.get("ipam")
            if isinstance(ipam, dict) and ipam.get("type") in FILE_IPAM_TYPES:
                ipam["dataDir"] = str(self.ipam_dir)
            if plugin.get("type") == "ebpf-redirect":
                plugin["pinRoot"] = str(self.pin_root)
        return render_conflist(conflist, overrides)


Namespace = str | Node | Pod


def ns_name(ns: str | Node | Pod) -> str:
    return ns if isinstance(ns, str) else ns.name


@dataclass
class Testbed:
    """Two nodes joined by a veth underlay, plus pods created on demand.

    Use as a context manager (or call close()); everything is named `name-...`.
    """

    name: str = field(default_factory=lambda: f"mycni-{secrets.token_hex(3)}")
    state_root: Path = STATE_ROOT
    subnet: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network(
            f"192.168.{100 + secrets.randbelow(150)}.0/24"
        )
    )
    nodes: tuple[Node, ...] = ()
    pods: list[Pod] = field(default_factory=list)
    _undo: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __enter__(self) -> Testbed:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state_dir(self) -> Path:
        return self.state_root / self.name

    @property
    def node1(self) -> Node:
        return self.nodes[0]

    @property
    def node2(self) -> Node:
        return self.nodes[1]

    def build(self) -> None:
        self.state_dir.mkdir(parents=True)
        self._undo.callback(shutil.rmtree, self.state_dir, ignore_errors=True)

        hosts = list(self.subnet.hosts())
        nodes = []
        for index in (1, 2):
            node = Node(
                name=f"{self.name}-n{index}",
                index=index,
                address=ipaddress.IPv4Interface(f"{hosts[index - 1]}/24"),
                state_dir=self.state_dir / f"n{index}",
            )
            create_netns(node.name)
            self._undo.callback(delete_netns_quietly, node.name)
            for directory in (node.cache_dir, node.ipam_dir, node.pin_root):
                directory.mkdir(parents=True)
            run(["mount", "-t", "bpf", "bpf", str(node.pin_root)])
            self._undo.callback(unmount_quietly, node.pin_root)
            nodes.append(node)
        self.nodes = tuple(nodes)

        n1, n2 = self.nodes
        # Created across the two namespaces in one step: no end ever exists in the
        # root namespace.
        run(
            [
                "ip",
                "-n",
                n1.name,
                "link",
                "add",
                n1.underlay,
                "type",
                "veth",
                "peer",
                "name",
                n2.underlay,
                "netns",
                n2.name,
            ]
        )
        for node in self.nodes:
            run(
                [
                    "ip",
                    "-n",
                    node.name,
                    "addr",
                    "add",
                    str(node.address),
                    "dev",
                    node.underlay,
                ]
            )
            run(["ip", "-n", node.name, "link", "set", node.underlay, "up"])
            # Plugins find the underlay as "the device of the default route".
            run(
                ["ip", "-n", node.name, "route", "add", "default", "dev", node.underlay]
            )
            # /proc/sys/net belongs to the namespace of the writer: only the node's.
            node.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])

    def add_pod(self, hint: str = "pod") -> Pod:
        """A new empty pod namespace (lo up), deleted at teardown if still there."""
        pod = Pod(f"{self.name}-{hint}{len(self.pods)}")
        create_netns(pod.name)
        self._undo.callback(delete_netns_quietly, pod.name)
        self.pods.append(pod)
        return pod

    def remove_pod(self, pod: Pod) -> None:
        """Delete a pod namespace now, as a runtime does when a container dies."""
        delete_netns_quietly(pod.name)

    def leftover_state(self) -> list[str]:
        """State a complete ADD/DEL cycle must not leave: IPAM reservations (files
        named by an address; host-local keeps its lock and last_reserved_ip files)
        and libcni cached results."""
        found = []
        for node in self.nodes:
            for path in sorted(node.ipam_dir.rglob("*")):
                if path.is_file() and is_ip_address(path.name):
                    found.append(f"{node.name}: ipam reservation {path}")
            for path in sorted((node.cache_dir / "results").glob("*")):
                found.append(f"{node.name}: libcni cached result {path}")
        return found

    def close(self) -> None:
        """Undo everything, in reverse order; every step runs even if one fails."""
        for pod in self.pods:
            delete_netns_quietly(pod.name)
        self._undo.close()


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def unmount_quietly(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def two_node_testbed(name: str | None = None) -> Iterator[Testbed]:
    testbed = Testbed(name=name) if name else Testbed()
    with testbed:
        yield testbed


# --- traffic --------------------------------------------------------------------


def ping(
    src: str | Namespace, dst_ip: str, *, count: int = 2, deadline: float = 5.0
) -> bool:
    """True when dst_ip answers `count` echo requests from src within deadline."""
    proc = run_in(
        src,
        [
            "ping",
            "-q",
            "-n",
            "-c",
            str(count),
            "-i",
            "0.2",
            "-W",
            "1",
            "-w",
            str(int(deadline)),
            dst_ip,
        ],
        check=False,
        timeout=deadline + 5,
    )
    return proc.returncode == 0


ECHO_SERVER = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(family, socket.SOCK_STREAM)
srv.bind((sys.argv[1], 0))
srv.listen(1)
srv.settimeout(float(sys.argv[2]))
print(srv.getsockname()[1], flush=True)
conn, peer = srv.accept()
conn.settimeout(float(sys.argv[2]))
data = b""
while not data.endswith(b"\n"):
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
conn.sendall(data)
conn.close()
print(peer[0], flush=True)
"""

ECHO_CLIENT = r"""
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3]))
conn.settimeout(float(sys.argv[3]))
conn.sendall(sys.argv[4].encode() + b"\n")
data = b""
while not data.endswith(b"\n"):
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"""


@dataclass(frozen=True)
class Exchange:
    reply: str  # what came back, without the newline
    peer: str  # the client address as the server saw it (shows any NAT)


def tcp_exchange(
    src: str | Namespace,
    dst: str | Namespace,
    dst_ip: str,
    *,
    payload: str = "hello mycni",
    timeout: float = 5.0,
) -> Exchange:
    """Send one line from src to an echo server in dst listening on dst_ip.

    The server is a child of this process, bounded by timeout and killed by PID.
    Raises CommandFailed when the client cannot connect or gets no echo.
    """
    argv = [
        "nsenter",
        f"--net={netns_path(ns_name(dst))}",
        "--",
        sys.executable,
        "-c",
        ECHO_SERVER,
        dst_ip,
        str(timeout),
    ]
    server = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        if not port:
            server.kill()
            _, err = server.communicate(timeout=timeout)
            raise CommandFailed(argv, subprocess.CompletedProcess(argv, -1, "", err))
        client = run_in(
            src,
            [sys.executable, "-c", ECHO_CLIENT, dst_ip, port, str(timeout), payload],
            timeout=timeout + 5,
        )
        out, _ = server.communicate(timeout=timeout)
        return Exchange(reply=client.stdout.rstrip("\n"), peer=out.strip())
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()
