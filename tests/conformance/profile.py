"""A plugin's conformance profile: its config template, the field the wrong-type case
corrupts, the plugin it is chained after, what it may leave on the node, and which
rows are known to fail. One small JSON file per plugin in profiles/."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import testbed as tb

PROFILES = Path(__file__).resolve().parent / "profiles"


class ProfileError(Exception):
    """A profile or template that cannot be used; the message names the file."""


@dataclass(frozen=True)
class WrongType:
    """A dotted JSON path and a value of the wrong type to put there."""

    path: str
    value: Any


@dataclass(frozen=True)
class Chain:
    """The plugin run before this one, whose ADD result becomes our prevResult."""

    plugin: str  # a name looked up in CNI_PATH, or a path
    config: Path


@dataclass(frozen=True)
class Probe:
    """Rows of an SQLite table under the state dir that must be empty afterwards."""

    sqlite: str  # relative to the state dir
    query: str


@dataclass(frozen=True)
class Profile:
    name: str
    plugin: Path | None
    config: Path | None
    cni_path: tuple[Path, ...] = ()
    version: str = "1.0.0"  # for the DEL shapes and the bad-input corpus
    wrong_type: WrongType | None = None
    chain: Chain | None = None
    shared_links: frozenset[str] = frozenset()
    state_allow: tuple[str, ...] = ()
    probes: tuple[Probe, ...] = ()
    empty_maps: tuple[str, ...] = ()  # pinned maps (relative to the bpffs)
    expect_fail: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, name_or_path: str) -> Profile:
        """A file, or the name of one in profiles/ ("vxlan" -> profiles/vxlan.json)."""
        path = Path(name_or_path)
        if not path.suffix and "/" not in name_or_path:
            path = PROFILES / f"{name_or_path}.json"
        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ProfileError(f"failed to read profile {path}: {exc}") from exc
        return cls.from_json(obj, path)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: Path) -> Profile:
        here = path.parent

        def local(value: str) -> Path:
            return (here / value).resolve()

        def repo(value: str) -> Path:
            return (tb.REPO / value).resolve()

        wrong = obj.get("wrongType")
        chain = obj.get("chain")
        return cls(
            name=obj.get("name", path.stem),
            plugin=repo(obj["plugin"]) if "plugin" in obj else None,
            config=local(obj["config"]) if "config" in obj else None,
            cni_path=tuple(repo(p) for p in obj.get("cniPath", [])),
            version=obj.get("version", "1.0.0"),
            wrong_type=WrongType(wrong["path"], wrong["value"]) if wrong else None,
            chain=Chain(chain["plugin"], local(chain["config"])) if chain else None,
            shared_links=frozenset(obj.get("sharedLinks", [])),
            state_allow=tuple(obj.get("stateAllow", [])),
            probes=tuple(Probe(p["sqlite"], p["query"]) for p in obj.get("probes", [])),
            empty_maps=tuple(obj.get("emptyMaps", [])),
            expect_fail=dict(obj.get("expectFail", {})),
        )


def render_template(path: Path, placeholders: dict[str, str]) -> dict[str, Any]:
    """Load a config template, filling ${STATE} and ${BPFFS} with this run's dirs."""
    try:
        text = string.Template(path.read_text()).substitute(placeholders)
        config: dict[str, Any] = json.loads(text)
    except (OSError, ValueError, KeyError) as exc:
        raise ProfileError(f"failed to render config template {path}: {exc}") from exc
    return config
