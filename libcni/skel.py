"""The dispatcher: reads the CNI environment and stdin, calls a handler, prints JSON."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, NoReturn

from libcni import args as cni_args
from libcni import version
from libcni.errors import (
    CniError,
    DecodingFailure,
    IncompatibleVersion,
    InvalidConfig,
    InvalidEnvironment,
    TryAgainLater,
    shown,
)
from libcni.types import PassThrough, Result

log = logging.getLogger(__name__)

# Runtimes never send more; a larger stdin is a mistake or an attack.
MAX_STDIN = 1 << 20
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
# Which variables each command needs (spec section "Parameters").
REQUIRED: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "STATUS": ("CNI_PATH",),
    "GC": ("CNI_PATH",),
    "VERSION": (),
}
# The same rules as the spec's reference library (libcni ValidateContainerID/Name).
# Use fullmatch: with match, Python's `$` also matches before a trailing newline.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
IFNAMSIZ = 16


@dataclass(frozen=True)
class Request:
    command: str
    container_id: str
    netns: str
    ifname: str
    args: dict[str, str]
    path: tuple[str, ...]
    config: dict[str, Any]
    stdin: bytes
    cni_version: str
    environ: Mapping[str, str]

    @property
    def network(self) -> str:
        return str(self.config["name"])


@dataclass(frozen=True)
class Plugin:
    name: str
    add: Callable[[Request], Result | PassThrough]
    delete: Callable[[Request], None]
    check: Callable[[Request], None]
    status: Callable[[Request], None] | None = None
    gc: Callable[[Request], None] | None = None
    # CNI_ARGS keys the plugin reads (the Kubernetes ones are always accepted).
    known_args: frozenset[str] = frozenset()


def validate_container_id(value: str) -> str | None:
    if not value:
        return "empty"
    if len(value) > 255:
        return f"{len(value)} characters, at most 255"
    if not NAME_RE.fullmatch(value):
        return f"{shown(value[:64])} must match {NAME_RE.pattern}"
    return None


def validate_ifname(value: str) -> str | None:
    if not value:
        return "empty"
    # IFNAMSIZ counts bytes; os.environ holds undecodable bytes as surrogates.
    try:
        size = len(value.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" gives
        return f"{shown(value)} is not valid UTF-8"
    if size >= IFNAMSIZ:
        return f"{shown(value)} is {size} bytes, at most {IFNAMSIZ - 1}"
    if value in (".", ".."):
        return f"{shown(value)} is not a valid interface name"
    if any(c == "/" or c == ":" or c.isspace() for c in value):
        return f"{shown(value)} contains '/', ':' or white space"
    return None


def read_environment(command: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Check every variable the command needs; one error names all the bad ones."""
    problems: list[str] = []
    for var in REQUIRED[command]:
        if var not in environ or (var != "CNI_NETNS" and not environ[var]):
            problems.append(f"{var} is missing")
    if "CNI_CONTAINERID" in REQUIRED[command] and environ.get("CNI_CONTAINERID"):
        why = validate_container_id(environ["CNI_CONTAINERID"])
        if why:
            problems.append(f"CNI_CONTAINERID {why}")
    if "CNI_IFNAME" in REQUIRED[command] and environ.get("CNI_IFNAME"):
        why = validate_ifname(environ["CNI_IFNAME"])
        if why:
            problems.append(f"CNI_IFNAME {why}")
    if (
        command in ("ADD", "CHECK")
        and "CNI_NETNS" in environ
        and not environ["CNI_NETNS"]
    ):
        problems.append("CNI_NETNS is empty")
    if problems:
        raise InvalidEnvironment("invalid environment: " + "; ".join(problems))
    return {var: environ.get(var, "") for var in REQUIRED[command]}


def parse_config(stdin: bytes) -> dict[str, Any]:
    if len(stdin) > MAX_STDIN:
        raise DecodingFailure(
            f"failed to read network config: stdin is larger than {MAX_STDIN} bytes"
        )
    try:
        config = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodingFailure(f"failed to decode network config: {exc}") from exc
    except RecursionError as exc:  # "[[[[..." well under MAX_STDIN is enough
        raise DecodingFailure(
            "failed to decode network config: nested too deep"
        ) from exc
    if not isinstance(config, dict):
        raise DecodingFailure(
            "failed to decode network config: expected an object, got "
            f"{type(config).__name__}"
        )
    return config


def check_config(config: dict[str, Any], command: str) -> str:
    """Validate the keys every plugin shares; return the cniVersion."""
    ver = config.get("cniVersion")
    if not isinstance(ver, str) or not ver:
        raise InvalidConfig(f"cniVersion: expected a version string, got {shown(ver)}")
    version.require_supported(ver)
    if command == "CHECK" and not version.at_least(ver, "0.4.0"):
        raise IncompatibleVersion(f"CHECK is not supported by cniVersion {ver}")
    if command in ("STATUS", "GC") and not version.at_least(ver, "1.1.0"):
        raise IncompatibleVersion(f"{command} needs cniVersion 1.1.0, got {ver}")
    for key in ("name", "type"):
        value = config.get(key)
        if not isinstance(value, str) or not value:
            raise InvalidConfig(
                f"{key}: expected a non-empty string, got {shown(value)}"
            )
    if not NAME_RE.fullmatch(config["name"]):
        raise InvalidConfig(
            f"name: {shown(config['name'])} must match {NAME_RE.pattern}"
        )
    return ver


def configure_logging(config: dict[str, Any], plugin: str) -> None:
    level_name = config.get("logLevel", "warning")
    level = logging.getLevelName(str(level_name).upper())
    unknown = not isinstance(level, int)
    if unknown:
        level = logging.WARNING
    root = logging.getLogger()
    root.setLevel(level)
    quiet_libraries()
    fmt = logging.Formatter(
        f"%(asctime)s {plugin}[%(process)d] %(levelname)s %(name)s: %(message)s"
    )
    log_file = config.get("logFile")
    if isinstance(log_file, str) and log_file:
        try:
            handler: logging.Handler = logging.FileHandler(log_file)
        except OSError as exc:
            log.warning(
                "cannot open logFile %s: %s; logging to stderr only", log_file, exc
            )
        else:
            handler.setFormatter(fmt)
            root.addHandler(handler)
    for handler in root.handlers:
        handler.setFormatter(fmt)
    if unknown:
        # A warning, not an error: a typo here must not fail a DEL and strand a pod.
        log.warning(
            "logLevel %s is not one of debug, info, warning, error; using warning",
            shown(level_name),
        )


# Libraries whose debug output would drown ours (pyroute2 logs every message).
NOISY_LOGGERS = ("pyroute2", "asyncio")


def quiet_libraries() -> None:
    """Hold noisy libraries at WARNING; pyroute2 resets its level when imported, so
    whoever imports it calls this again."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def version_answer(stdin: bytes) -> dict[str, Any]:
    ver = version.LATEST
    try:
        requested = json.loads(stdin).get("cniVersion") if stdin.strip() else None
    except (ValueError, AttributeError, RecursionError):
        requested = None
    if isinstance(requested, str) and requested in version.SUPPORTED:
        ver = requested
    return {"cniVersion": ver, "supportedVersions": list(version.SUPPORTED)}


def run(plugin: Plugin, environ: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """Run one command; return (exit code, what goes on stdout). Never raises."""
    started = time.monotonic()
    reply_version = version.LATEST
    command = environ.get("CNI_COMMAND", "")
    try:
        if command not in COMMANDS:
            raise InvalidEnvironment(
                f"invalid CNI_COMMAND: {shown(command[:32])}, expected one of "
                f"{', '.join(COMMANDS)}"
                if command
                else "invalid environment: CNI_COMMAND is missing"
            )
        if command == "VERSION":
            return 0, json.dumps(version_answer(stdin[:MAX_STDIN]))
        env = read_environment(command, environ)
        config = parse_config(stdin)
        if isinstance(config.get("cniVersion"), str):
            reply_version = config["cniVersion"]
        configure_logging(config, plugin.name)
        reply_version = check_config(config, command)
        # A DEL that fails on arguments would leave the pod stuck in Terminating.
        strict = command != "DEL"
        pairs = cni_args.parse(environ.get("CNI_ARGS", ""), strict)
        if strict:
            cni_args.validate(pairs, plugin.known_args)
        req = Request(
            command=command,
            container_id=env.get("CNI_CONTAINERID", ""),
            netns=environ.get("CNI_NETNS", ""),
            ifname=env.get("CNI_IFNAME", ""),
            args=pairs,
            path=tuple(p for p in environ.get("CNI_PATH", "").split(":") if p),
            config=config,
            stdin=stdin,
            cni_version=reply_version,
            environ=environ,
        )
        out = call_handler(plugin, req)
        log.info(
            "%s container=%s ifname=%s ok in %.0f ms",
            command,
            req.container_id,
            req.ifname,
            (time.monotonic() - started) * 1000,
        )
        return 0, out
    except CniError as exc:
        if reply_version not in version.SUPPORTED:
            reply_version = version.LATEST
        log.error(
            "%s container=%s failed in %.0f ms: code %d: %s",
            command,
            environ.get("CNI_CONTAINERID", ""),
            (time.monotonic() - started) * 1000,
            exc.to_dict(reply_version)["code"],
            exc.msg,
        )
        return 1, exc.to_json(reply_version)
    except Exception as exc:  # the one catch-all: anything untyped becomes 999
        if reply_version not in version.SUPPORTED:
            reply_version = version.LATEST
        log.error(
            "%s failed unexpectedly: %s\n%s", command, exc, traceback.format_exc()
        )
        err = CniError(f"internal error in {plugin.name}: {type(exc).__name__}")
        return 1, err.to_json(reply_version)


def call_handler(plugin: Plugin, req: Request) -> str:
    if req.command == "ADD":
        result = plugin.add(req)
        return json.dumps(result.to_dict(req.cni_version))
    handlers = {
        "DEL": plugin.delete,
        "CHECK": plugin.check,
        "STATUS": plugin.status,
        "GC": plugin.gc,
    }
    handler = handlers[req.command]
    if handler is not None:
        handler(req)
    return ""


def read_stdin(stream: IO[bytes]) -> bytes:
    # One byte more than the limit tells "too large" apart from "exactly the limit".
    return stream.read(MAX_STDIN + 1)


# A runtime that gives up on a plugin (timeout, shutdown) sends one of these.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    """Turn a stop signal into an error raised where the plugin is: the handler's
    rollback runs and the runtime still reads one error object. A second signal
    kills at once."""
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_DFL)
    raise TryAgainLater(f"interrupted by {signal.Signals(signum).name}")


def main(plugin: Plugin) -> NoReturn:
    """Entry point of a plugin executable: stdout carries the reply and nothing else."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    # Anything a library or a child process writes to fd 1 goes to stderr instead, so
    # that the runtime reads exactly one JSON document.
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt)
    code, out = run(plugin, os.environ, read_stdin(sys.stdin.buffer))
    if out:
        reply.write(out + "\n")
    reply.close()
    logging.shutdown()
    sys.exit(code)
