"""CNI_ARGS, the runtime's `KEY=VALUE;...` side channel, and its `args.cni` twin."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from libcni.errors import InvalidEnvironment, shown

log = logging.getLogger(__name__)

# Keys Kubernetes runtimes send on every call; every plugin accepts and logs them.
K8S_KEYS = frozenset(
    {"K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"}
)
IGNORE_UNKNOWN = "IgnoreUnknown"
TRUE_WORDS = frozenset({"1", "true", "True", "TRUE"})


def parse(text: str, strict: bool = True) -> dict[str, str]:
    """Split CNI_ARGS into a dict; a pair without `=` or a key is an error, or with
    strict=False (for DEL, which must not fail on arguments) skipped with a warning."""
    pairs: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            if not strict:
                log.warning("ignoring CNI_ARGS item %r: not KEY=VALUE", item)
                continue
            raise InvalidEnvironment(
                f"invalid CNI_ARGS: {shown(item)} is not KEY=VALUE"
            )
        pairs[key] = value
    return pairs


def validate(pairs: Mapping[str, str], known: Collection[str]) -> None:
    """Reject keys the plugin does not know, unless the runtime said IgnoreUnknown=1
    (as the spec's reference library does); log the Kubernetes identity keys."""
    ignore = pairs.get(IGNORE_UNKNOWN, "")
    if ignore and ignore not in TRUE_WORDS and ignore not in ("0", "false", "False"):
        raise InvalidEnvironment(
            f"invalid CNI_ARGS: IgnoreUnknown={shown(ignore)} is not a boolean"
        )
    unknown = sorted(
        k for k in pairs if k not in known and k not in K8S_KEYS and k != IGNORE_UNKNOWN
    )
    if unknown and ignore not in TRUE_WORDS:
        raise InvalidEnvironment(
            f"invalid CNI_ARGS: unknown keys {', '.join(unknown)} "
            "(set IgnoreUnknown=1 to allow them)"
        )
    pod = {k: v for k, v in pairs.items() if k in K8S_KEYS}
    if pod:
        log.info("pod %s", " ".join(f"{k}={v}" for k, v in sorted(pod.items())))


def lookup(
    config: Mapping[str, Any], pairs: Mapping[str, str], cni_key: str, env_key: str
) -> Any:
    """A per-call argument: `args.cni.<cni_key>` in the config wins over CNI_ARGS."""
    section = config.get("args")
    if isinstance(section, Mapping):
        cni = section.get("cni")
        if isinstance(cni, Mapping) and cni_key in cni:
            return cni[cni_key]
    return pairs.get(env_key)
