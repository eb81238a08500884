"""The dispatcher in-process: skel.run with an injected environment and stdin, a
recording fake plugin, and skel.main as a subprocess for its stdout discipline."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from libcni import skel, version
from libcni.errors import (
    CniError,
    Code,
    ConflictingState,
    DelegateError,
    TryAgainLater,
)
from libcni.types import Interface, IPConfig, Result

REPO = Path(__file__).resolve().parents[2]
RESULT = Result(
    interfaces=(Interface("eth0", "02:00:00:00:00:01", "/var/run/netns/p"),),
    ips=(IPConfig.from_dict({"address": "10.1.0.3/24", "interface": 0}, "t"),),
)


@dataclass
class FakePlugin:
    """Records every call; raises `error` from every handler when set."""

    error: BaseException | None = None
    calls: list[skel.Request] = field(default_factory=list)

    def _record(self, req: skel.Request) -> None:
        self.calls.append(req)
        if self.error is not None:
            raise self.error

    def add(self, req: skel.Request) -> Result:
        self._record(req)
        return RESULT

    def plugin(
        self, known_args: frozenset[str] = frozenset(), verbs_1_1: bool = True
    ) -> skel.Plugin:
        return skel.Plugin(
            name="fake",
            add=self.add,
            delete=self._record,
            check=self._record,
            status=self._record if verbs_1_1 else None,
            gc=self._record if verbs_1_1 else None,
            known_args=known_args,
        )


BASE_ENV = {
    "CNI_CONTAINERID": "0123abcd",
    "CNI_NETNS": "/var/run/netns/pod",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}
REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "STATUS": ("CNI_PATH",),
    "GC": ("CNI_PATH",),
}
VERBS = tuple(REQUIRED)


def env(command: str, **overrides: str | None) -> dict[str, str]:
    out = {"CNI_COMMAND": command, **BASE_ENV}
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def conf(cni_version: str | None = version.LATEST, **extra: Any) -> bytes:
    obj: dict[str, Any] = {"name": "net1", "type": "fake", **extra}
    if cni_version is not None:
        obj["cniVersion"] = cni_version
    return json.dumps({k: v for k, v in obj.items() if v is not None}).encode()


def run(
    environ: dict[str, str], stdin: bytes | None = None, fake: FakePlugin | None = None
) -> tuple[int, str]:
    fake = fake or FakePlugin()
    return skel.run(fake.plugin(), environ, conf() if stdin is None else stdin)


def error_of(status: int, out: str) -> dict[str, Any]:
    """The error object of a failed run: exit 1, one JSON object on stdout."""
    assert status == 1, out
    obj = json.loads(out)
    assert isinstance(obj, dict)
    assert set(obj) <= {"cniVersion", "code", "msg", "details"}
    return obj


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    # skel.run configures the root logger from the config (level, formatters).
    root = logging.getLogger()
    level, formatters = root.level, [(h, h.formatter) for h in root.handlers]
    yield
    root.setLevel(level)
    for handler, formatter in formatters:
        handler.setFormatter(formatter)


# --- the environment -------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "var"),
    [(c, v) for c, vs in REQUIRED.items() for v in vs],
    ids=[f"{c}-without-{v}" for c, vs in REQUIRED.items() for v in vs],
)
def test_missing_required_variable_is_code_4_naming_it(command: str, var: str) -> None:
    err = error_of(*run(env(command, **{var: None})))
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert var in err["msg"]


@pytest.mark.parametrize("command", VERBS)
def test_every_missing_variable_is_named_in_one_message(command: str) -> None:
    fake = FakePlugin()
    err = error_of(*run({"CNI_COMMAND": command}, fake=fake))
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert [v for v in REQUIRED[command] if v not in err["msg"]] == []
    assert fake.calls == []


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_bad_container_id_and_ifname_are_named_together(command: str) -> None:
    environ = env(command, CNI_CONTAINERID="-bad", CNI_IFNAME="eth/0", CNI_PATH="")
    err = error_of(*run(environ))
    assert err["code"] == Code.INVALID_ENVIRONMENT
    for var in ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"):
        assert var in err["msg"]


@pytest.mark.parametrize("command", ["DEL", "STATUS", "GC"])
def test_commands_without_netns_accept_no_cni_netns(command: str) -> None:
    assert run(env(command, CNI_NETNS=None)) == (0, "")


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_empty_cni_netns_is_code_4(command: str) -> None:
    err = error_of(*run(env(command, CNI_NETNS="")))
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert "CNI_NETNS" in err["msg"]


BAD_CONTAINER_IDS = {
    "empty": "",
    "300-chars": "a" * 300,
    "path-traversal": "../../etc/passwd",
    "non-ascii": "conteneur-\u00e9t\u00e9",
    "leading-dash": "-abc",
    "leading-dot": ".abc",
    "slash": "abc/def",
    "colon": "abc:def",
    "space": "abc def",
    "trailing-newline": "abc\n",
    "nul": "abc\0def",
}
GOOD_CONTAINER_IDS = {
    "one-char": "a",
    "64-hex": "0123456789abcdef" * 4,
    "255-chars": "a" * 255,
    "dots-dashes-underscores": "a.b-c_d",
    "leading-digit": "9pod",
}


@pytest.mark.parametrize(
    "value", BAD_CONTAINER_IDS.values(), ids=BAD_CONTAINER_IDS.keys()
)
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_invalid_container_id_is_code_4(command: str, value: str) -> None:
    err = error_of(*run(env(command, CNI_CONTAINERID=value)))
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert "CNI_CONTAINERID" in err["msg"]
    assert "\n" not in err["msg"]


@pytest.mark.parametrize(
    "value", GOOD_CONTAINER_IDS.values(), ids=GOOD_CONTAINER_IDS.keys()
)
def test_valid_container_id_reaches_the_handler(value: str) -> None:
    fake = FakePlugin()
    status, _ = run(env("DEL", CNI_CONTAINERID=value), fake=fake)
    assert status == 0
    assert fake.calls[0].container_id == value


BAD_IFNAMES = {
    "empty": "",
    "16-chars": "a" * 16,
    "dot": ".",
    "dot-dot": "..",
    "slash": "eth/0",
    "colon": "eth:0",
    "space": "eth 0",
    "tab": "eth\t0",
    "newline": "eth0\n",
    # IFNAMSIZ counts bytes: 9 characters, 18 bytes of UTF-8.
    "9-chars-18-bytes": "\u00e9" * 9,
    "lone-surrogate": "eth\ud800",
}
GOOD_IFNAMES = {
    "eth0": "eth0",
    "15-chars": "a" * 15,
    "dots-inside": "eth0.100",
    "7-chars-14-bytes": "\u00e9" * 7,
    # os.environ's spelling of an undecodable byte (0xff); the kernel accepts it.
    "undecodable-byte": "eth\udcff",
}


@pytest.mark.parametrize("value", BAD_IFNAMES.values(), ids=BAD_IFNAMES.keys())
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_invalid_ifname_is_code_4(command: str, value: str) -> None:
    err = error_of(*run(env(command, CNI_IFNAME=value)))
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert "CNI_IFNAME" in err["msg"]


@pytest.mark.parametrize("value", GOOD_IFNAMES.values(), ids=GOOD_IFNAMES.keys())
def test_valid_ifname_reaches_the_handler(value: str) -> None:
    fake = FakePlugin()
    status, _ = run(env("DEL", CNI_IFNAME=value), fake=fake)
    assert status == 0
    assert fake.calls[0].ifname == value


@pytest.mark.parametrize(
    "command",
    ["add", "FOO", "ADD ", "DELETE", "\u00c4DD"],
    ids=["lowercase-add", "foo", "trailing-space", "delete", "non-ascii"],
)
def test_unknown_command_is_code_4(command: str) -> None:
    err = error_of(*run(env(command)))
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert "CNI_COMMAND" in err["msg"]


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_missing_command_is_code_4(value: str | None) -> None:
    err = error_of(*run(env("ADD", CNI_COMMAND=value)))
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert "CNI_COMMAND" in err["msg"]


def test_request_carries_the_environment_and_config() -> None:
    fake = FakePlugin()
    stdin = conf("1.0.0", ipam={"type": "x"})
    environ = env("ADD", CNI_ARGS="K8S_POD_NAME=p;IP=10.1.0.9")
    status, _ = skel.run(fake.plugin(frozenset({"IP"})), environ, stdin)
    assert status == 0
    [req] = fake.calls
    assert (req.command, req.container_id, req.ifname) == ("ADD", "0123abcd", "eth0")
    assert req.netns == "/var/run/netns/pod"
    assert req.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert req.args == {"K8S_POD_NAME": "p", "IP": "10.1.0.9"}
    assert req.config["ipam"] == {"type": "x"}
    assert (req.stdin, req.cni_version, req.network) == (stdin, "1.0.0", "net1")
    assert req.environ is environ


# --- stdin and the shared config keys --------------------------------------------


UNDECODABLE = {
    "empty": b"",
    "truncated-object": b'{"cniVersion": "1.1.0",',
    "bare-word": b"hello",
    "invalid-utf8": b'{"name": "\xff"}',
    "trailing-garbage": b"{} {}",
    "array": b"[]",
    "string": b'"net1"',
    "number": b"42",
    "null": b"null",
    "over-1-MiB": b'{"pad": "' + b"x" * (1 << 20) + b'"}',
    "nested-100000-deep": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("stdin", UNDECODABLE.values(), ids=UNDECODABLE.keys())
@pytest.mark.parametrize("command", VERBS)
def test_undecodable_config_is_code_6(command: str, stdin: bytes) -> None:
    err = error_of(*run(env(command), stdin))
    assert err["code"] == Code.DECODING_FAILURE
    assert len(err["msg"]) < 300


def test_config_of_exactly_1_mib_is_read() -> None:
    head = conf()[:-1] + b', "pad": "'
    stdin = head + b"x" * ((1 << 20) - len(head) - 2) + b'"}'
    assert len(stdin) == 1 << 20
    assert run(env("DEL"), stdin) == (0, "")


INVALID_CONFIGS = {
    "no-cniVersion": conf(None),
    "cniVersion-number": conf(1.0),  # type: ignore[arg-type]
    "cniVersion-empty": conf(""),
    "no-name": json.dumps({"cniVersion": "1.1.0", "type": "fake"}).encode(),
    "name-empty": conf(name=""),
    "name-number": conf(name=7),
    "no-type": json.dumps({"cniVersion": "1.1.0", "name": "n"}).encode(),
    "type-empty": conf(type=""),
    "type-list": conf(type=["fake"]),
    "name-with-space": conf(name="my net"),
    "name-with-slash": conf(name="net/1"),
    "name-path-traversal": conf(name="../etc"),
    "name-leading-dash": conf(name="-net"),
    "name-leading-dot": conf(name=".net"),
    "name-non-ascii": conf(name="r\u00e9seau"),
    "name-trailing-newline": conf(name="net1\n"),
}


@pytest.mark.parametrize("stdin", INVALID_CONFIGS.values(), ids=INVALID_CONFIGS.keys())
@pytest.mark.parametrize("command", VERBS)
def test_invalid_shared_key_is_code_7(command: str, stdin: bytes) -> None:
    fake = FakePlugin()
    err = error_of(*run(env(command), stdin, fake))
    assert err["code"] == Code.INVALID_CONFIG
    assert fake.calls == []


@pytest.mark.parametrize(
    "cni_version",
    ["2.0.0", "0.2.0", "0.1.0", "1.2.0", "1.0", "v1.0.0", "1.0.0-rc1", "1.0.\u00b2"],
    ids=lambda v: f"cniVersion-{v!a}",
)
@pytest.mark.parametrize("command", VERBS)
def test_unknown_version_is_code_1(command: str, cni_version: str) -> None:
    err = error_of(*run(env(command), conf(cni_version)))
    assert err["code"] == Code.INCOMPATIBLE_VERSION
    assert err["cniVersion"] in version.SUPPORTED


@pytest.mark.parametrize("cni_version", ["0.3.0", "0.3.1"])
def test_check_before_0_4_0_is_code_1(cni_version: str) -> None:
    err = error_of(*run(env("CHECK"), conf(cni_version)))
    assert err["code"] == Code.INCOMPATIBLE_VERSION
    assert err["cniVersion"] == cni_version


@pytest.mark.parametrize("cni_version", ["0.4.0", "1.0.0", "1.1.0"])
def test_check_from_0_4_0_reaches_the_handler(cni_version: str) -> None:
    assert run(env("CHECK"), conf(cni_version)) == (0, "")


@pytest.mark.parametrize("cni_version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
@pytest.mark.parametrize("command", ["STATUS", "GC"])
def test_status_and_gc_before_1_1_0_are_code_1(command: str, cni_version: str) -> None:
    fake = FakePlugin()
    err = error_of(*run(env(command), conf(cni_version), fake))
    assert err["code"] == Code.INCOMPATIBLE_VERSION
    assert fake.calls == []


@pytest.mark.parametrize("command", ["STATUS", "GC"])
def test_status_and_gc_without_a_handler_succeed(command: str) -> None:
    plugin = FakePlugin().plugin(verbs_1_1=False)
    assert skel.run(plugin, env(command), conf()) == (0, "")


# --- VERSION ---------------------------------------------------------------------


@pytest.mark.parametrize("cni_version", version.SUPPORTED)
def test_version_answers_in_the_requested_version(cni_version: str) -> None:
    status, out = run({"CNI_COMMAND": "VERSION"}, conf(cni_version))
    assert status == 0
    assert json.loads(out) == {
        "cniVersion": cni_version,
        "supportedVersions": list(version.SUPPORTED),
    }


@pytest.mark.parametrize(
    "stdin",
    [b"", b"garbage", b"[]", conf("9.9.9"), conf(None), b"[" * 100_000],
    ids=["empty", "garbage", "array", "unknown-version", "no-version", "deep"],
)
def test_version_without_a_known_request_answers_latest(stdin: bytes) -> None:
    status, out = run({"CNI_COMMAND": "VERSION"}, stdin)
    assert status == 0
    assert json.loads(out)["cniVersion"] == version.LATEST
    assert json.loads(out)["supportedVersions"] == list(version.SUPPORTED)


# --- results and errors ----------------------------------------------------------


@pytest.mark.parametrize("cni_version", version.SUPPORTED)
def test_add_prints_the_result_in_the_config_version(cni_version: str) -> None:
    status, out = run(env("ADD"), conf(cni_version))
    assert status == 0
    assert json.loads(out) == RESULT.to_dict(cni_version)
    assert json.loads(out)["cniVersion"] == cni_version


@pytest.mark.parametrize("command", ["DEL", "CHECK", "STATUS", "GC"])
def test_other_verbs_print_nothing_on_success(command: str) -> None:
    fake = FakePlugin()
    assert run(env(command), fake=fake) == (0, "")
    assert [r.command for r in fake.calls] == [command]


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("boom\nTraceback (most recent call last):\n  secret"),
        KeyError("name"),
        ZeroDivisionError(),
        AssertionError("x" * 10_000),
    ],
    ids=["runtime-error-multiline", "key-error", "zero-division", "huge-message"],
)
@pytest.mark.parametrize("command", VERBS)
def test_unexpected_exception_is_one_short_error_999(
    command: str, exc: Exception
) -> None:
    cni_version = "1.1.0" if command in ("STATUS", "GC") else "1.0.0"
    status, out = run(env(command), conf(cni_version), FakePlugin(error=exc))
    assert out.count("\n") == 0
    err = error_of(status, out)
    assert err["code"] == Code.GENERIC
    assert err["cniVersion"] == cni_version
    assert "Traceback" not in out
    assert "secret" not in out
    assert len(err["msg"]) < 100


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConflictingState("failed to create link: exists"), 101),
        (TryAgainLater("failed to lock store: busy"), 11),
        (CniError("generic"), 999),
        (DelegateError(100, "no free address", "range 10.1.0.0/24"), 100),
    ],
    ids=[
        "conflicting-state-101",
        "try-again-11",
        "plain-cni-error-999",
        "delegate-100",
    ],
)
@pytest.mark.parametrize("command", VERBS)
def test_cni_error_renders_its_own_code(command: str, exc: CniError, code: int) -> None:
    err = error_of(*run(env(command), conf(), FakePlugin(error=exc)))
    assert err["code"] == code
    assert err["msg"] == exc.msg
    assert err.get("details", "") == exc.details


# --- CNI_ARGS --------------------------------------------------------------------


@pytest.mark.parametrize(
    "cni_args",
    ["Unknown=1", "foo", "=x", "IgnoreUnknown=maybe;X=1", "a=1;;b"],
    ids=["unknown-key", "no-equals", "empty-key", "bad-ignore-unknown", "pair-no-eq"],
)
def test_del_never_validates_cni_args(cni_args: str) -> None:
    fake = FakePlugin()
    assert run(env("DEL", CNI_ARGS=cni_args), fake=fake) == (0, "")
    assert len(fake.calls) == 1


@pytest.mark.parametrize("command", ["ADD", "CHECK", "STATUS", "GC"])
def test_unknown_cni_args_key_is_code_4_naming_it(command: str) -> None:
    err = error_of(*run(env(command, CNI_ARGS="FOO=1;K8S_POD_NAME=p")))
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert "FOO" in err["msg"]
    assert "K8S_POD_NAME" not in err["msg"]


@pytest.mark.parametrize(
    "cni_args",
    [
        "IgnoreUnknown=1;FOO=1",
        "IgnoreUnknown=true;FOO=1",
        "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c;"
        "K8S_POD_UID=u",
        "IP=10.1.0.9",
        "",
    ],
    ids=["ignore-unknown-1", "ignore-unknown-true", "k8s-keys", "known-key", "empty"],
)
@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_accepted_cni_args(command: str, cni_args: str) -> None:
    fake = FakePlugin()
    plugin = fake.plugin(known_args=frozenset({"IP"}))
    status, _ = skel.run(plugin, env(command, CNI_ARGS=cni_args), conf())
    assert status == 0
    assert len(fake.calls) == 1


# --- skel.main as an executable --------------------------------------------------

PLUGIN_SCRIPT = """
import logging, os, sys
from libcni import skel
from libcni.errors import ConflictingState
from libcni.types import Interface, Result

log = logging.getLogger("noisy")

def noise(req):
    print("print to stdout")
    sys.stdout.write("write to sys.stdout\\n")
    sys.__stdout__.write("write to sys.__stdout__\\n")
    os.write(1, b"write to fd 1\\n")
    os.system("echo child process output")
    log.warning("a warning from the handler")
    what = req.config.get("fail")
    if what == "crash":
        raise RuntimeError("crash in handler")
    if what == "cni":
        raise ConflictingState("failed to create link: exists")

def add(req):
    noise(req)
    return Result(interfaces=(Interface("eth0"),))

skel.main(skel.Plugin("noisy", add, noise, noise))
"""


@pytest.mark.parametrize(
    ("command", "fail", "status", "expect"),
    [
        ("ADD", None, 0, {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0"}]}),
        ("ADD", "crash", 1, {"code": 999}),
        ("ADD", "cni", 1, {"code": 101}),
        ("DEL", "crash", 1, {"code": 999}),
        ("VERSION", None, 0, {"cniVersion": "1.1.0"}),
        ("NOPE", None, 1, {"code": 4}),
    ],
    ids=["add-ok", "add-crash", "add-cni-error", "del-crash", "version", "bad-cmd"],
)
def test_main_prints_exactly_one_json_document(
    tmp_path: Path, command: str, fail: str | None, status: int, expect: dict[str, Any]
) -> None:
    script = tmp_path / "noisy_plugin.py"
    script.write_text(textwrap.dedent(PLUGIN_SCRIPT))
    environ = {**os.environ, **env(command), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(script)],
        input=conf(fail=fail),
        env=environ,
        capture_output=True,
        timeout=30,
        check=False,
    )
    out = proc.stdout.decode()
    assert proc.returncode == status, proc.stderr.decode()
    assert out.endswith("\n") and out.count("\n") == 1, out
    reply = json.loads(out)
    assert reply.items() >= expect.items()
    err = proc.stderr.decode()
    if command != "VERSION" and command != "NOPE":
        for noise in ("print to stdout", "fd 1", "child process", "a warning"):
            assert noise in err
    if fail == "crash":
        assert "Traceback" in err
        assert "Traceback" not in out


def test_main_prints_nothing_for_a_successful_del(tmp_path: Path) -> None:
    script = tmp_path / "noisy_plugin.py"
    script.write_text(textwrap.dedent(PLUGIN_SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script)],
        input=conf(),
        env={**os.environ, **env("DEL"), "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert b"child process output" in proc.stderr


SLOW_PLUGIN_SCRIPT = """
import contextlib, sys, time
from pathlib import Path
from libcni import skel

def add(req):
    with contextlib.ExitStack() as undo:
        undo.callback(Path(req.config["marker"]).write_text, "rolled back")
        Path(req.config["ready"]).write_text("in handler")
        time.sleep(30)
        undo.pop_all()
    raise AssertionError("not reached")

skel.main(skel.Plugin("slow", add, add, add))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stop_signal_rolls_back_and_still_answers_one_error(
    tmp_path: Path, signum: int
) -> None:
    script = tmp_path / "slow_plugin.py"
    script.write_text(textwrap.dedent(SLOW_PLUGIN_SCRIPT))
    marker, ready = tmp_path / "marker", tmp_path / "ready"
    stdin = json.dumps(
        {**json.loads(conf()), "marker": str(marker), "ready": str(ready)}
    ).encode()
    (tmp_path / "stdin").write_bytes(stdin)
    with (tmp_path / "stdin").open("rb") as feed:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=feed,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env("ADD"), "PYTHONPATH": str(REPO)},
        )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    reply = json.loads(out)
    assert reply["code"] == 11 and signal.Signals(signum).name in reply["msg"]
    assert marker.read_text() == "rolled back"


@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_unknown_log_level_is_a_warning_not_an_error(
    command: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo in logLevel once went unnoticed; refusing it would fail DEL too."""
    fake = FakePlugin()
    with caplog.at_level(logging.WARNING):
        status, _ = run(env(command), conf(logLevel="bogus"), fake)
    assert status == 0
    assert 'logLevel "bogus" is not one of debug, info, warning, error' in caplog.text
