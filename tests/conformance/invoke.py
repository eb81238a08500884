"""Running a plugin executable the way a runtime does: CNI_* variables, the network
config on stdin, inside the node namespace; and reading what it answered."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Longer than any sane CNI command; a plugin still running then is killed by PID.
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Outcome:
    """What one plugin execution returned."""

    exit_code: int
    stdout: str
    stderr: str

    def document(self) -> Any:
        """stdout as exactly one JSON document, or None (empty, garbage, or several)."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None

    def error(self) -> dict[str, Any] | None:
        """The error object when stdout holds exactly one with an integer code."""
        doc = self.document()
        if isinstance(doc, dict) and isinstance(doc.get("code"), int):
            return doc
        return None

    def summary(self, width: int = 60) -> str:
        """A one-line account for the table: the exit code and what stdout held."""
        text = f"exit {self.exit_code}"
        if self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        err = self.error() if self.exit_code != 0 else None
        if err is not None:
            msg = " ".join(str(err.get("msg", "")).split())
            text += f", code {err['code']}: {msg}"
        elif self.exit_code != 0:
            text += ", " + describe_stdout(self.stdout)
        return text if len(text) <= width else text[: width - 3] + "..."

    def detail(self) -> str:
        return (
            f"exit {self.exit_code}\n"
            f"stdout: {self.stdout.strip() or '(empty)'}\n"
            f"stderr: {tail(self.stderr) or '(empty)'}"
        )


def describe_stdout(stdout: str) -> str:
    if not stdout.strip():
        return "nothing on stdout"
    try:
        doc = json.loads(stdout)
    except ValueError:
        return "stdout is not one JSON document"
    return f"stdout holds no error object: {json.dumps(doc)[:40]}"


def tail(text: str, lines: int = 5) -> str:
    return "\n        ".join(text.strip().splitlines()[-lines:])


def cni_environ(
    command: str,
    *,
    container_id: str | None,
    netns: str | None,
    ifname: str | None,
    cni_path: str | None,
    overrides: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """The environment of one call; None leaves a variable out altogether."""
    env: dict[str, str | None] = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": cni_path,
    }
    env.update(overrides or {})
    return {key: value for key, value in env.items() if value is not None}


def execute(
    plugin: Path, node_netns: Path, env: Mapping[str, str], stdin: bytes
) -> Outcome:
    """Run the plugin in the node namespace (nsenter, which leaves /sys and the
    mount namespace alone, so bpffs pins stay visible)."""
    argv = ["nsenter", f"--net={node_netns}", "--", str(plugin)]
    try:
        proc = subprocess.run(
            argv,
            input=stdin,
            env=dict(env),
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(
            -9,
            decode(exc.stdout),
            f"killed after {TIMEOUT_S:.0f} s " + decode(exc.stderr),
        )
    return Outcome(proc.returncode, decode(proc.stdout), decode(proc.stderr))


def decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", "replace")
