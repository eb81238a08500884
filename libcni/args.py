"""CNI_ARGS: the runtime's `KEY=VALUE;KEY=VALUE` side channel."""

from __future__ import annotations

from libcni.errors import InvalidEnvironment

# Keys Kubernetes runtimes send on every call; plugins accept and may log them.
K8S_KEYS = frozenset(
    {"K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"}
)


def parse(text: str) -> dict[str, str]:
    """Split CNI_ARGS into a dict; a pair without `=` or a key is an error."""
    pairs: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidEnvironment(f"invalid CNI_ARGS: {item!r} is not KEY=VALUE")
        pairs[key] = value
    return pairs
