"""Per-attachment records on disk: what an ADD made for (network, container, ifname).

DEL and GC read them instead of trusting prevResult, which runtimes may not send.
One JSON file per attachment, written atomically; names are escaped so a container ID
never forms a path of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libcni.errors import IOFailure

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
SUFFIX = ".json"
NAME_MAX = 255  # bytes in one path component (Linux)


def escape(part: str) -> str:
    """Make part a file-name component: %XX for all but [A-Za-z0-9_-].

    '.' is escaped too, so no result is '.', '..' or contains the separator.
    surrogatepass: os.environ spells undecodable bytes as lone surrogates.
    """
    return _UNSAFE.sub(
        lambda m: "".join(f"%{b:02X}" for b in m[0].encode("utf-8", "surrogatepass")),
        part,
    )


def file_name(parts: tuple[str, ...], suffix: str = "") -> str:
    """The escaped parts joined by '.', or when that exceeds NAME_MAX (a valid
    container ID may have 255 characters) '=' and a digest: '=' is never escaped
    output, so the two forms cannot collide."""
    name = ".".join(escape(p) for p in parts) + suffix
    if len(name) <= NAME_MAX:
        return name
    return "=" + hashlib.sha256(json.dumps(parts).encode()).hexdigest() + suffix


@dataclass(frozen=True)
class Entry:
    container_id: str
    ifname: str
    data: dict[str, Any]


@dataclass(frozen=True)
class RecordStore:
    """<root>/<network>/<container id>.<ifname>.json, every part escaped (see
    file_name for names too long for that)."""

    directory: Path

    @classmethod
    def for_network(cls, root: Path, network: str) -> RecordStore:
        return cls(root / file_name((network,)))

    def path(self, container_id: str, ifname: str) -> Path:
        return self.directory / file_name((container_id, ifname), SUFFIX)

    def save(self, container_id: str, ifname: str, data: dict[str, Any]) -> None:
        """Write atomically (temp file, fsync, rename): a crash leaves old or new."""
        path = self.path(container_id, ifname)
        body = {"containerId": container_id, "ifname": ifname, **data}
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(body, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise IOFailure(f"failed to write record {path}: {exc.strerror}") from exc
        log.debug("saved record %s", path)

    def load(self, container_id: str, ifname: str) -> dict[str, Any] | None:
        return self._read(self.path(container_id, ifname))

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IOFailure(f"failed to read record {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise IOFailure(f"failed to parse record {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise IOFailure(f"failed to parse record {path}: not an object")
        return data

    def entries(self) -> Iterator[Entry]:
        """Every record of the network; unreadable ones are logged and skipped."""
        try:
            paths = sorted(self.directory.glob(f"*{SUFFIX}"))
        except OSError:
            return
        for path in paths:
            try:
                data = self._read(path)
            except IOFailure as exc:
                log.warning("skipping record: %s", exc.msg)
                continue
            if data is None:
                continue
            cid, ifname = data.get("containerId"), data.get("ifname")
            if not isinstance(cid, str) or not isinstance(ifname, str):
                log.warning("skipping record %s: no containerId or ifname", path)
                continue
            yield Entry(cid, ifname, data)

    def remove_quietly(self, container_id: str, ifname: str) -> None:
        path = self.path(container_id, ifname)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("failed to remove record %s: %s; left in place", path, exc)
