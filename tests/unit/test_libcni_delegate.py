"""Delegation with tiny fake delegate executables written into tmp_path."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from libcni import delegate
from libcni.errors import CniError, Code
from libcni.skel import Request
from libcni.types import Result

CONFIG = {"cniVersion": "1.0.0", "name": "net1", "type": "fake-ipam"}
RESULT = {
    "cniVersion": "1.0.0",
    "ips": [{"address": "10.1.0.3/24", "gateway": "10.1.0.1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
}


def write_delegate(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / name
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return exe


def printing(directory: Path, name: str, out: str, status: int = 0) -> Path:
    """A delegate that records its call next to itself and prints `out`."""
    log = directory / f"{name}.calls"
    return write_delegate(
        directory,
        name,
        f'echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME" >> {shlex.quote(str(log))}\n'
        f"cat > {shlex.quote(str(directory / (name + '.stdin')))}\n"
        f"printf '%s' {shlex.quote(out)}\n"
        f"exit {status}\n",
    )


def request(path: tuple[Path, ...], command: str = "ADD") -> Request:
    stdin = json.dumps(CONFIG).encode()
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/var/run/netns/pod",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": ":".join(map(str, path)),
    }
    return Request(
        command=command,
        container_id="c1",
        netns="/var/run/netns/pod",
        ifname="eth0",
        args={},
        path=tuple(map(str, path)),
        config=dict(CONFIG),
        stdin=stdin,
        cni_version="1.0.0",
        environ=environ,
    )


# --- find ------------------------------------------------------------------------


def test_find_takes_the_first_in_cni_path_order(tmp_path: Path) -> None:
    first = printing(tmp_path / "a", "fake-ipam", "{}")
    printing(tmp_path / "b", "fake-ipam", "{}")
    assert delegate.find(
        "fake-ipam", [str(tmp_path / "a"), str(tmp_path / "b")]
    ) == str(first)
    later = [str(tmp_path / "missing"), str(tmp_path / "b")]
    assert delegate.find("fake-ipam", later) == str(tmp_path / "b" / "fake-ipam")


def test_find_skips_non_executables_and_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "fake-ipam").write_text("#!/bin/sh\n")
    (tmp_path / "b" / "fake-ipam").mkdir(parents=True)
    good = printing(tmp_path / "c", "fake-ipam", "{}")
    dirs = [str(tmp_path / d) for d in "abc"]
    assert delegate.find("fake-ipam", dirs) == str(good)


@pytest.mark.parametrize(
    ("plugin_type", "dirs"),
    [("host-local", ["/nonexistent/a", "/nonexistent/b"]), ("host-local", [])],
    ids=["not-in-two-dirs", "empty-cni-path"],
)
def test_find_missing_names_the_plugin_and_the_path(
    plugin_type: str, dirs: list[str]
) -> None:
    with pytest.raises(CniError) as info:
        delegate.find(plugin_type, dirs)
    assert info.value.code == Code.DELEGATE_FAILURE
    assert '"host-local"' in info.value.msg
    assert (":".join(dirs) or "(empty)") in info.value.msg


@pytest.mark.parametrize(
    "plugin_type", ["", ".", "..", "../bin/sh", "/bin/sh"], ids=repr
)
def test_find_rejects_a_type_that_is_not_a_file_name(
    tmp_path: Path, plugin_type: str
) -> None:
    with pytest.raises(CniError) as info:
        delegate.find(plugin_type, [str(tmp_path), "/bin", "/"])
    assert info.value.code == Code.DELEGATE_FAILURE


# --- add and the other verbs -----------------------------------------------------


def test_add_passes_env_and_config_and_parses_the_result(tmp_path: Path) -> None:
    printing(tmp_path, "fake-ipam", json.dumps(RESULT))
    req = request((tmp_path,), "ADD")
    assert delegate.add("fake-ipam", req) == Result.from_dict(RESULT)
    assert (tmp_path / "fake-ipam.calls").read_text() == "ADD c1 eth0\n"
    assert (tmp_path / "fake-ipam.stdin").read_bytes() == req.stdin


@pytest.mark.parametrize("verb", ["DEL", "CHECK", "STATUS", "GC"])
def test_other_verbs_run_the_delegate_with_their_command(
    tmp_path: Path, verb: str
) -> None:
    printing(tmp_path, "fake-ipam", "")
    # The parent's CNI_COMMAND (here ADD, as in a rollback) never leaks through.
    req = request((tmp_path,), "ADD")
    func = {
        "DEL": delegate.delete,
        "CHECK": delegate.check,
        "STATUS": delegate.status,
        "GC": delegate.gc,
    }[verb]
    func("fake-ipam", req)
    assert (tmp_path / "fake-ipam.calls").read_text() == f"{verb} c1 eth0\n"


ERROR_OBJECT = {
    "cniVersion": "1.0.0",
    "code": 100,
    "msg": "no free address",
    "details": "r1",
}


@pytest.mark.parametrize(
    ("out", "status", "code", "in_msg"),
    [
        (json.dumps(ERROR_OBJECT), 1, 100, "no free address"),
        (json.dumps({"code": 11, "msg": "busy"}), 1, 11, "busy"),
        (json.dumps({"code": 7}), 1, 7, "no message"),
        ("", 1, 103, "no output"),
        ("panic: runtime error\ngoroutine 1", 2, 103, "panic: runtime error"),
        (json.dumps({"msg": "no code"}), 1, 103, "no code"),
        (json.dumps({"code": "eleven", "msg": "x"}), 1, 103, "eleven"),
        ("[1, 2]", 1, 103, "[1, 2]"),
        ("", 0, 103, "fake-ipam"),
        ("<html>garbage</html>", 0, 103, "<html>garbage</html>"),
        ("x" * 10_000, 0, 103, "x" * 100),
        ("[1, 2]", 0, 103, "fake-ipam"),
        (json.dumps({"ips": "10.1.0.3/24"}), 0, 103, "fake-ipam"),
        (json.dumps({"ips": [{"address": "10.1.0.3"}]}), 0, 103, "fake-ipam"),
    ],
    ids=[
        "error-object-code-100-details",
        "error-object-code-11",
        "error-object-without-msg",
        "exit-1-no-output",
        "exit-2-go-panic",
        "exit-1-object-without-code",
        "exit-1-code-not-a-number",
        "exit-1-json-array",
        "exit-0-no-output",
        "exit-0-garbage",
        "exit-0-huge-garbage",
        "exit-0-json-array",
        "exit-0-ips-not-a-list",
        "exit-0-address-without-prefix",
    ],
)
def test_add_failures(
    tmp_path: Path, out: str, status: int, code: int, in_msg: str
) -> None:
    printing(tmp_path, "fake-ipam", out, status)
    with pytest.raises(CniError) as info:
        delegate.add("fake-ipam", request((tmp_path,)))
    obj = info.value.to_dict("1.0.0")
    assert obj["code"] == code
    assert in_msg in obj["msg"]
    assert len(obj["msg"]) < 400
    if out == json.dumps(ERROR_OBJECT):
        assert obj["details"] == "r1"


def test_delete_passes_the_delegate_error_code(tmp_path: Path) -> None:
    printing(tmp_path, "fake-ipam", json.dumps({"code": 11, "msg": "busy"}), 1)
    with pytest.raises(CniError) as info:
        delegate.delete("fake-ipam", request((tmp_path,), "DEL"))
    assert info.value.to_dict("1.0.0")["code"] == 11


def test_delete_quietly_swallows_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    printing(tmp_path, "fake-ipam", "", 1)
    delegate.delete_quietly("fake-ipam", request((tmp_path,)))
    delegate.delete_quietly("missing-ipam", request((tmp_path,)))
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2


def test_a_delegate_that_cannot_be_executed_is_103(tmp_path: Path) -> None:
    exe = tmp_path / "fake-ipam"
    exe.write_bytes(b"\x7fELF not really")
    exe.chmod(0o755)
    with pytest.raises(CniError) as info:
        delegate.add("fake-ipam", request((tmp_path,)))
    assert info.value.code == Code.DELEGATE_FAILURE


# --- what the delegate speaks ----------------------------------------------------

VERSION_ANSWERS = {
    "lists-1.1.0": (
        json.dumps({"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}),
        ("1.0.0", "1.1.0"),
    ),
    "stops-at-1.0.0": (
        json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}),
        ("0.4.0", "1.0.0"),
    ),
    "versions-a-string": (json.dumps({"supportedVersions": "1.1.0"}), ()),
    "no-versions": (json.dumps({"cniVersion": "1.1.0"}), ()),
    "array": ("[]", ()),
    "garbage": ("not json", ()),
    "nothing": ("", ()),
}


@pytest.mark.parametrize(
    ("out", "listed"), VERSION_ANSWERS.values(), ids=VERSION_ANSWERS.keys()
)
def test_versions(tmp_path: Path, out: str, listed: tuple[str, ...]) -> None:
    printing(tmp_path, "fake-ipam", out)
    got = delegate.versions("fake-ipam", request((tmp_path,)))
    assert tuple(got) == listed
    assert (tmp_path / "fake-ipam.calls").read_text() == "VERSION c1 eth0\n"


def test_a_failing_version_raises_its_code(tmp_path: Path) -> None:
    printing(tmp_path, "fake-ipam", json.dumps({"code": 4, "msg": "bad"}), 1)
    with pytest.raises(CniError) as info:
        delegate.versions("fake-ipam", request((tmp_path,)))
    assert info.value.to_dict("1.1.0")["code"] == 4


def test_speaking_relabels_the_config_for_an_older_delegate() -> None:
    req = request(())
    older = delegate.speaking(req, "1.0.0")
    assert older.cni_version == "1.0.0"
    assert json.loads(older.stdin)["cniVersion"] == "1.0.0"
    assert {**older.config, "cniVersion": req.cni_version} == req.config
