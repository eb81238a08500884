"""CNI spec versions this suite speaks, and how they order."""

from __future__ import annotations

from libcni.errors import IncompatibleVersion, shown

# 0.1.0 and 0.2.0 used a different result shape (ip4/ip6); no runtime in use sends them.
SUPPORTED: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED[-1]


def parse(version: str) -> tuple[int, int, int]:
    """Turn "1.0.0" into (1, 0, 0); anything else is an incompatible version."""
    parts = version.split(".")
    # isascii: str.isdigit() is also true of "²", which int() rejects.
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise IncompatibleVersion(
            f"invalid cniVersion {shown(version)}: expected X.Y.Z"
        )
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def require_supported(version: str) -> None:
    parse(version)
    if version not in SUPPORTED:
        raise IncompatibleVersion(
            f"unsupported cniVersion {shown(version)}: "
            f"supported are {', '.join(SUPPORTED)}"
        )


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def newest_of(versions: tuple[str, ...] | list[str]) -> str:
    """The newest version we also speak among `versions` (LATEST when none is)."""
    ours = [v for v in versions if v in SUPPORTED]
    return max(ours, key=parse) if ours else LATEST
