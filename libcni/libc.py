"""The C library, for the few calls Python 3.11's os module lacks (setns, statfs)."""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def libc() -> ctypes.CDLL:
    # By soname: ctypes.util.find_library would run ldconfig in a subprocess on
    # every plugin start. The process has libc mapped already; this only finds it.
    return ctypes.CDLL("libc.so.6", use_errno=True)
