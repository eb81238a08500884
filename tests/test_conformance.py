"""The conformance runner on our three plugins: every row passes, or fails only where
the plugin's profile says so (an expected failure that passes fails too: strict)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import testbed as tb
from tests.conformance.suite import Options, run_suite


@pytest.mark.root
@pytest.mark.parametrize("profile", ["vxlan", "mycni-ipam", "ebpf-redirect"])
def test_plugin_conforms_to_its_profile(
    profile: str, testbed_names: Iterator[str]
) -> None:
    # Named after the session, so the leak check pins anything left on this test.
    options = Options(
        profile=profile, prefix=next(testbed_names), state_root=tb.STATE_ROOT
    )

    report = run_suite(options)

    assert report.ok, report.render()
