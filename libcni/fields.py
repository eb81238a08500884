"""Typed reads of network config fields; every error names the key and the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libcni.errors import InvalidConfig, shown
from libcni.skel import validate_ifname


def integer(obj: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidConfig(f"{key}: expected an integer, got {shown(value)}")
    if not low <= value <= high:
        raise InvalidConfig(f"{key}: {value} is outside {low}..{high}")
    return value


def string(obj: dict[str, Any], key: str, default: str) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise InvalidConfig(f"{key}: expected a string, got {shown(value)}")
    return value


def boolean(obj: dict[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise InvalidConfig(f"{key}: expected true or false, got {shown(value)}")
    return value


def absolute_path(obj: dict[str, Any], key: str, default: Path) -> Path:
    """An absolute path without '..' parts (a relative one depends on the runtime's
    working directory, which no two runtimes agree on)."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise InvalidConfig(f"{key}: expected a path string, got {shown(value)}")
    path = Path(value)
    if not path.is_absolute() or ".." in path.parts:
        raise InvalidConfig(
            f"{key}: {shown(value)} is not an absolute path without '..'"
        )
    return path


def interface_name(value: str, key: str) -> str:
    why = validate_ifname(value)
    if why:
        raise InvalidConfig(f"{key}: {why}")
    return value
