"""Turning the resolv.conf named by ipam.resolvConf into the result's DNS section."""

from __future__ import annotations

from pathlib import Path

from libcni.errors import IOFailure
from libcni.types import DNS


def read_dns(path: Path) -> DNS:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise IOFailure(f"failed to read ipam.resolvConf {path}: {exc}") from exc
    return parse_dns(text)


def parse_dns(text: str) -> DNS:
    """The nameserver, domain, search and options lines; anything else is skipped."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    domain = ""
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            nameservers.append(values[0])
        elif key == "domain" and values:
            domain = values[0]
        elif key == "search":
            search = values  # the last search line wins, as in the resolver
        elif key == "options":
            options.extend(values)
    return DNS(tuple(nameservers), domain, tuple(search), tuple(options))
