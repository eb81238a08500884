"""Running tc, bpftool and mount as child processes: argument lists, never a shell."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence
from typing import Any

from libcni.errors import BpfFailure

log = logging.getLogger(__name__)

# A stuck tool must not hang the runtime's ADD; tc and bpftool finish in milliseconds.
TIMEOUT_S = 30.0


class CommandFailed(BpfFailure):
    """A tool exited non-zero; `returncode` lets callers read state back and decide."""

    def __init__(self, msg: str, returncode: int, details: str = "") -> None:
        super().__init__(msg, details)
        self.returncode = returncode


def run(action: str, argv: Sequence[str]) -> str:
    """Run argv and return its stdout; raise CommandFailed: `failed to <action>`."""
    log.debug("running %s", argv)
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BpfFailure(f"failed to {action}: {argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise BpfFailure(
            f"failed to {action}: {argv[0]} did not finish in {TIMEOUT_S:.0f} s"
        ) from exc
    if proc.returncode != 0:
        raise CommandFailed(
            f"failed to {action}: {_reason(proc)}",
            proc.returncode,
            details=" ".join(argv),
        )
    return proc.stdout


def run_json(action: str, argv: Sequence[str]) -> Any:
    """Run a tool in JSON mode (`-j`) and decode what it printed."""
    out = run(action, argv)
    try:
        return json.loads(out) if out.strip() else []
    except json.JSONDecodeError as exc:
        raise BpfFailure(f"failed to {action}: {argv[0]} printed invalid JSON") from exc


def _reason(proc: subprocess.CompletedProcess[str]) -> str:
    """The tool's own reason: bpftool -j puts it in stdout as {"error": ...}."""
    try:
        obj = json.loads(proc.stdout)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        return str(obj["error"])
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    # tc prints the kernel's extack first and "We have an error talking to the
    # kernel" after it; bpftool prints libbpf's reason before its own summary.
    if lines:
        return "; ".join(lines[:2])
    return f"{proc.args[0]} exited with status {proc.returncode}"
