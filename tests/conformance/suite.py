"""One conformance run: resolve the plugin, its profile and CNI_PATH, build the
sandbox, run every case in it, tear it down, and return the report."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.conformance.cases import Runner
from tests.conformance.profile import Profile, ProfileError, render_template
from tests.conformance.report import Report
from tests.conformance.sandbox import Sandbox

REFERENCE_PLUGINS = Path("/usr/lib/cni")


@dataclass(frozen=True)
class Options:
    plugin: Path | None = None
    config: Path | None = None
    profile: str | None = None
    cni_path: tuple[Path, ...] = ()
    expect_fail: tuple[str, ...] = ()
    prefix: str | None = None
    state_root: Path | None = None


def missing_tools() -> list[str]:
    reasons = []
    if os.geteuid() != 0:
        reasons.append(f"needs root (euid is {os.geteuid()})")
    for tool in ("ip", "nsenter", "mount", "umount"):
        if shutil.which(tool) is None:
            reasons.append(f"{tool} not found in PATH")
    return reasons


def resolve(options: Options) -> tuple[Profile, Path, Path]:
    """The profile (empty when none is named), the plugin and the config template."""
    if options.profile:
        profile = Profile.load(options.profile)
    else:
        name = options.plugin.name if options.plugin else "plugin"
        profile = Profile(name=name, plugin=None, config=None)
    plugin = options.plugin or profile.plugin
    config = options.config or profile.config
    if plugin is None or config is None:
        raise ProfileError("name the plugin and the config template (or a profile)")
    plugin = plugin.resolve()
    if not os.access(plugin, os.X_OK):
        raise ProfileError(f"plugin {plugin} is not an executable file")
    if not config.is_file():
        raise ProfileError(f"config template {config} does not exist")
    return profile, plugin, config


def cni_path_of(options: Options, profile: Profile, plugin: Path) -> str:
    """--cni-path, then the profile's, then the plugin's own directory."""
    dirs: list[str] = []
    for directory in (*options.cni_path, *profile.cni_path, plugin.parent):
        if str(directory) not in dirs:
            dirs.append(str(directory))
    return ":".join(dirs)


def run_suite(options: Options) -> Report:
    """Run every case; raises ProfileError for unusable input, before any namespace
    exists. The sandbox is gone when this returns or raises."""
    profile, plugin, config_path = resolve(options)
    expect_fail = dict(profile.expect_fail)
    for case in options.expect_fail:
        expect_fail.setdefault(case, "named by --expect-fail")

    with Sandbox(options.prefix, options.state_root) as sandbox:
        placeholders = {"STATE": str(sandbox.state_dir)}
        templates = [config_path] + ([profile.chain.config] if profile.chain else [])
        if any("${BPFFS}" in p.read_text() for p in templates):
            placeholders["BPFFS"] = str(sandbox.bpffs())
        runner = Runner(
            sandbox=sandbox,
            profile=profile,
            plugin=plugin,
            template=render_template(config_path, placeholders),
            cni_path=cni_path_of(options, profile, plugin),
            chain_template=(
                render_template(profile.chain.config, placeholders)
                if profile.chain
                else None
            ),
            expect_fail=expect_fail,
        )
        rows = runner.run()

    cases = {row.case for row in rows}
    unknown = tuple(sorted(name for name in expect_fail if name not in cases))
    return Report(str(plugin), tuple(rows), unknown)
