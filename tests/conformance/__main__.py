"""Command line of the conformance runner; see the package docstring."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from tests.conformance.profile import ProfileError
from tests.conformance.suite import Options, missing_tools, run_suite


def parse_args(argv: list[str]) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance",
        description="Run CNI conformance cases against a plugin executable.",
    )
    parser.add_argument("--plugin", type=Path, help="the plugin executable")
    parser.add_argument("--config", type=Path, help="the network config template")
    parser.add_argument("--profile", help="a profile name (profiles/NAME.json) or file")
    parser.add_argument(
        "--cni-path", default="", help="directories searched first for delegates"
    )
    parser.add_argument(
        "--expect-fail", default="", help="comma-separated cases known to fail"
    )
    parser.add_argument("--prefix", help="name prefix of namespaces and state")
    parser.add_argument("--state-root", type=Path, help="where state dirs are made")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    options = Options(
        plugin=args.plugin,
        config=args.config,
        profile=args.profile,
        cni_path=tuple(Path(p) for p in args.cni_path.split(":") if p),
        expect_fail=tuple(c for c in args.expect_fail.split(",") if c),
        prefix=args.prefix,
        state_root=args.state_root,
    )
    return options, args.verbose


def exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the sandbox's context manager, which cleans up.
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    options, verbose = parse_args(argv)
    problems = missing_tools()
    if problems:
        print(f"conformance: cannot run: {'; '.join(problems)}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, exit_on_signal)
    try:
        report = run_suite(options)
    except ProfileError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    print(report.render(verbose))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
