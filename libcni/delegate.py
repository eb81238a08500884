"""Delegation: run another plugin (the IPAM) from CNI_PATH with our env and config."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
from collections.abc import Sequence

from libcni.errors import CniError, Code, DelegateError, InvalidConfig, shown
from libcni.skel import Request
from libcni.types import Result

log = logging.getLogger(__name__)

# A delegate that has not answered by then is stuck (a runtime would kill us anyway).
TIMEOUT_S = 120


class DelegateMissing(CniError):
    code = Code.DELEGATE_FAILURE


def find(plugin_type: str, path: Sequence[str]) -> str:
    """The first executable named `plugin_type` in CNI_PATH."""
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise DelegateMissing(f"invalid plugin type {shown(plugin_type)}")
    for directory in path:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise DelegateMissing(
        f"failed to find plugin {shown(plugin_type)} in CNI_PATH "
        f"{':'.join(path) or '(empty)'}"
    )


def _run(plugin_type: str, command: str, req: Request) -> str:
    exe = find(plugin_type, req.path)
    env = dict(req.environ)
    # The request's fields win over the inherited environment, so a caller may act
    # for another attachment (GC releasing one that the runtime forgot).
    env.update(
        CNI_COMMAND=command,
        CNI_CONTAINERID=req.container_id,
        CNI_IFNAME=req.ifname,
        CNI_NETNS=req.netns,
    )
    log.debug("delegating %s to %s", command, exe)
    try:
        proc = subprocess.run(
            [exe],
            input=req.stdin,
            env=env,
            stdout=subprocess.PIPE,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DelegateError(
            int(Code.TRY_AGAIN_LATER),
            f"delegate {plugin_type} {command} did not answer within {TIMEOUT_S} s",
        ) from exc
    except OSError as exc:
        raise DelegateMissing(f"failed to run delegate {exe}: {exc.strerror}") from exc
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise _delegate_error(plugin_type, command, proc.returncode, out)
    return out


def _delegate_error(plugin_type: str, command: str, status: int, out: str) -> CniError:
    try:
        obj = json.loads(out)
        code = int(obj["code"])
        msg = str(obj.get("msg") or "no message")
        details = str(obj.get("details") or "")
    except (ValueError, KeyError, TypeError):
        snippet = out.strip()[:200] or "no output"
        return DelegateError(
            int(Code.DELEGATE_FAILURE),
            f"delegate {plugin_type} {command} failed with exit status {status}: "
            f"{snippet}",
        )
    return DelegateError(code, msg, details)


def add(plugin_type: str, req: Request) -> Result:
    out = _run(plugin_type, "ADD", req)
    try:
        obj = json.loads(out)
    except ValueError as exc:
        raise DelegateError(
            int(Code.DELEGATE_FAILURE),
            f"failed to parse the result of delegate {plugin_type}: "
            f"{shown(out.strip()[:200])}",
        ) from exc
    try:
        return Result.from_dict(obj, f"result of {plugin_type}")
    except InvalidConfig as exc:
        # The delegate's output is wrong, not our network config (code 7).
        raise DelegateError(
            int(Code.DELEGATE_FAILURE),
            f"delegate {plugin_type} returned an invalid result: {exc.msg}",
        ) from exc


def delete(plugin_type: str, req: Request) -> None:
    _run(plugin_type, "DEL", req)


def delete_quietly(plugin_type: str, req: Request) -> None:
    """Undo an ADD; a failure here is logged, never raised over the original error."""
    try:
        delete(plugin_type, req)
    except CniError as exc:
        log.warning(
            "rollback: DEL of delegate %s for container %s failed: %s; its address "
            "may stay reserved until the runtime's DEL or GC",
            plugin_type,
            req.container_id,
            exc.msg,
        )


def check(plugin_type: str, req: Request) -> None:
    _run(plugin_type, "CHECK", req)


def status(plugin_type: str, req: Request) -> None:
    _run(plugin_type, "STATUS", req)


def gc(plugin_type: str, req: Request) -> None:
    _run(plugin_type, "GC", req)


def versions(plugin_type: str, req: Request) -> tuple[str, ...]:
    """The spec versions the delegate's VERSION lists (STATUS and GC need 1.1.0)."""
    out = _run(plugin_type, "VERSION", req)
    try:
        supported = json.loads(out).get("supportedVersions", [])
    except (ValueError, AttributeError):
        return ()
    if not isinstance(supported, list):
        return ()
    return tuple(v for v in supported if isinstance(v, str))


def speaking(req: Request, version: str) -> Request:
    """The same request with its config re-labelled for a delegate that only speaks
    an older version (a DEL's config reads the same in every version)."""
    config = {**req.config, "cniVersion": version}
    return dataclasses.replace(
        req, config=config, stdin=json.dumps(config).encode(), cni_version=version
    )
