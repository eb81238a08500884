"""The throwaway world a conformance run lives in: a "node" network namespace, one
pod namespace per case, a state directory and (on demand) a bpffs, all removed on
close, also when the run fails or is interrupted.

Nothing here touches the root network namespace: the node's underlay is a veth
created inside the node namespace, and every `ip` command names its namespace.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import shutil
import tempfile
from pathlib import Path

from tests import testbed as tb

# The node's only way out; plugins that look for "the device of the default route"
# (vxlan's underlay) find it. Fixed: every run has its own node namespace.
UNDERLAY = "underlay"
PEER = "underlay-peer"
NODE_ADDRESS = "192.168.77.1/24"


class Sandbox:
    """Use as a context manager; every object is named `<prefix>-...`."""

    def __init__(self, prefix: str | None = None, state_root: Path | None = None):
        self.prefix = prefix or f"cnf-{secrets.token_hex(3)}"
        self.node = f"{self.prefix}-node"
        self._state_root = state_root
        self.state_dir = Path()
        self.pods: list[str] = []
        self._pod_numbers = itertools.count()
        self._bpffs: Path | None = None
        self._undo = contextlib.ExitStack()

    def __enter__(self) -> Sandbox:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def node_path(self) -> Path:
        return tb.netns_path(self.node)

    def build(self) -> None:
        if self._state_root is not None:
            self._state_root.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(
            tempfile.mkdtemp(prefix=f"{self.prefix}-", dir=self._state_root)
        )
        self._undo.callback(shutil.rmtree, self.state_dir, ignore_errors=True)

        tb.create_netns(self.node)
        self._undo.callback(tb.delete_netns_quietly, self.node)
        ip = ["ip", "-n", self.node]
        # A veth with both ends in the node (this kernel has no dummy driver); the
        # peer stays down-free of addresses and only makes `underlay` a real device.
        tb.run([*ip, "link", "add", UNDERLAY, "type", "veth", "peer", "name", PEER])
        tb.run([*ip, "link", "set", PEER, "up"])
        tb.run([*ip, "addr", "add", NODE_ADDRESS, "dev", UNDERLAY])
        tb.run([*ip, "link", "set", UNDERLAY, "up"])
        tb.run([*ip, "route", "add", "default", "dev", UNDERLAY])

    def bpffs(self) -> Path:
        """A bpffs of this run's own, mounted on first use, so pins cannot collide
        with anyone else's and unmounting frees them all."""
        if self._bpffs is None:
            path = self.state_dir / "bpffs"
            path.mkdir()
            tb.run(["mount", "-t", "bpf", "bpf", str(path)])
            self._undo.callback(tb.unmount_quietly, path)
            self._bpffs = path
        return self._bpffs

    def new_pod(self) -> str:
        """A new empty pod namespace (lo up); returns its name."""
        name = f"{self.prefix}-p{next(self._pod_numbers)}"
        self.pods.append(name)
        tb.create_netns(name)
        return name

    def remove_pod(self, name: str) -> None:
        tb.delete_netns_quietly(name)

    def node_links(self) -> set[str]:
        return tb.list_links(self.node)

    def close(self) -> None:
        """Undo everything in reverse; every step runs even if one fails."""
        for pod in self.pods:
            tb.delete_netns_quietly(pod)
        self._undo.close()
