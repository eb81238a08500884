"""Advisory locks serializing concurrent plugin runs that share node state."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from libcni.errors import IOFailure

log = logging.getLogger(__name__)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on directory (which must exist) for the block.

    flock works on a directory fd on any filesystem, bpffs included, and the
    kernel drops it when the process dies, so a killed ADD never wedges the node.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise IOFailure(
            f"failed to open {directory} for locking: {exc.strerror}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        log.debug("locked %s", directory)
        yield
    finally:
        os.close(fd)
