"""Spec versions: parsing, the supported list and their order."""

from __future__ import annotations

import pytest

from libcni import version
from libcni.errors import Code, IncompatibleVersion


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0.3.0", (0, 3, 0)), ("1.1.0", (1, 1, 0)), ("10.20.30", (10, 20, 30))],
)
def test_parse(text: str, parsed: tuple[int, int, int]) -> None:
    assert version.parse(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["", "1", "1.0", "1.0.0.0", "v1.0.0", "1.0.0-rc1", "1..0", " 1.0.0", "1.0.\u00b2"],
    ids=lambda t: f"cniVersion-{t!a}",
)
def test_parse_rejects_as_incompatible(text: str) -> None:
    with pytest.raises(IncompatibleVersion) as info:
        version.parse(text)
    assert info.value.code == Code.INCOMPATIBLE_VERSION


@pytest.mark.parametrize("text", version.SUPPORTED)
def test_supported_versions_are_accepted(text: str) -> None:
    version.require_supported(text)


@pytest.mark.parametrize("text", ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "01.0.0"])
def test_other_versions_are_incompatible_naming_them(text: str) -> None:
    with pytest.raises(IncompatibleVersion) as info:
        version.require_supported(text)
    assert f'"{text}"' in info.value.msg


def test_supported_is_in_order_and_latest_is_last() -> None:
    parsed = [version.parse(v) for v in version.SUPPORTED]
    assert parsed == sorted(parsed)
    assert version.LATEST == version.SUPPORTED[-1] == "1.1.0"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0.0", "1.0.0", True),
        ("1.1.0", "1.0.0", True),
        ("0.4.0", "1.0.0", False),
        ("0.10.0", "0.4.0", True),
        ("0.3.1", "0.4.0", False),
    ],
    ids=["equal", "newer", "older", "numeric-not-lexical", "patch-below-minor"],
)
def test_at_least(a: str, b: str, expected: bool) -> None:
    assert version.at_least(a, b) is expected
