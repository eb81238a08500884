"""CNI_ARGS parsing, per-plugin key validation and the args.cni lookup."""

from __future__ import annotations

from typing import Any

import pytest

from libcni import args
from libcni.errors import Code, InvalidEnvironment


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("", {}),
        ("A=1", {"A": "1"}),
        ("A=1;B=2", {"A": "1", "B": "2"}),
        ("A=1;;B=2;", {"A": "1", "B": "2"}),
        ("A=", {"A": ""}),
        ("A=x=y", {"A": "x=y"}),
        ("A=1;A=2", {"A": "2"}),
    ],
    ids=["empty", "one", "two", "empty-items", "empty-value", "equals-in-value", "dup"],
)
def test_parse(text: str, pairs: dict[str, str]) -> None:
    assert args.parse(text) == pairs


@pytest.mark.parametrize(
    "text", ["foo", "=x", "A=1;bar"], ids=["no-eq", "no-key", "2nd"]
)
def test_parse_rejects_an_item_without_key_and_equals(text: str) -> None:
    with pytest.raises(InvalidEnvironment) as info:
        args.parse(text)
    assert info.value.code == Code.INVALID_ENVIRONMENT
    assert "CNI_ARGS" in info.value.msg


def test_parse_not_strict_skips_bad_items() -> None:
    assert args.parse("foo;A=1;=x", strict=False) == {"A": "1"}


@pytest.mark.parametrize(
    "pairs",
    [
        {},
        {"IP": "10.1.0.9"},
        {"K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "p"},
        {"K8S_POD_INFRA_CONTAINER_ID": "c", "K8S_POD_UID": "u"},
        {"IgnoreUnknown": "1", "FOO": "x"},
        {"IgnoreUnknown": "true", "FOO": "x"},
        {"IgnoreUnknown": "0"},
    ],
    ids=[
        "none",
        "known",
        "k8s-name",
        "k8s-infra-uid",
        "ignore-unknown-1",
        "ignore-unknown-true",
        "ignore-unknown-0-nothing-unknown",
    ],
)
def test_validate_accepts(pairs: dict[str, str]) -> None:
    args.validate(pairs, frozenset({"IP"}))


@pytest.mark.parametrize(
    ("pairs", "named"),
    [
        ({"FOO": "x"}, "FOO"),
        ({"FOO": "x", "BAR": "y"}, "BAR, FOO"),
        ({"IgnoreUnknown": "0", "FOO": "x"}, "FOO"),
        ({"IgnoreUnknown": "false", "FOO": "x"}, "FOO"),
        ({"IgnoreUnknown": "maybe"}, "maybe"),
        ({"ip": "10.1.0.9"}, "ip"),
    ],
    ids=[
        "unknown",
        "two-unknown-sorted",
        "ignore-unknown-0",
        "ignore-unknown-false",
        "ignore-unknown-not-bool",
        "wrong-case-key",
    ],
)
def test_validate_rejects_naming_the_key(pairs: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidEnvironment) as info:
        args.validate(pairs, frozenset({"IP"}))
    assert named in info.value.msg


@pytest.mark.parametrize(
    ("config", "pairs", "expected"),
    [
        ({"args": {"cni": {"ips": ["10.1.0.5"]}}}, {"IP": "10.1.0.9"}, ["10.1.0.5"]),
        ({"args": {"cni": {"ips": None}}}, {"IP": "10.1.0.9"}, None),
        ({"args": {"cni": {}}}, {"IP": "10.1.0.9"}, "10.1.0.9"),
        ({"args": {"other": {"ips": 1}}}, {"IP": "10.1.0.9"}, "10.1.0.9"),
        ({"args": "garbage"}, {"IP": "10.1.0.9"}, "10.1.0.9"),
        ({"args": {"cni": ["ips"]}}, {"IP": "10.1.0.9"}, "10.1.0.9"),
        ({}, {"IP": "10.1.0.9"}, "10.1.0.9"),
        ({}, {}, None),
    ],
    ids=[
        "args-cni-wins",
        "args-cni-null-still-wins",
        "args-cni-without-key",
        "args-without-cni",
        "args-not-object",
        "args-cni-not-object",
        "no-args",
        "nowhere",
    ],
)
def test_lookup(config: dict[str, Any], pairs: dict[str, str], expected: Any) -> None:
    assert args.lookup(config, pairs, "ips", "IP") == expected
