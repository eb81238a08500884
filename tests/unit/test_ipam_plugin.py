"""mycni-ipam end to end without root: in-process through libcni.skel, as a
subprocess (`python -m mycni_ipam`), and side by side with the reference host-local."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from libcni import skel, version
from mycni_ipam import sqlite_store
from mycni_ipam.plugin import PLUGIN

REPO = Path(__file__).resolve().parents[2]
HOST_LOCAL = Path("/usr/lib/cni/host-local")
VERSIONS = version.SUPPORTED

Runner = Callable[..., tuple[int, dict[str, Any]]]


def netconf(data_dir: Path, ver: str = "1.0.0", **ipam: Any) -> dict[str, Any]:
    ipam.setdefault("ranges", [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]])
    return {
        "cniVersion": ver,
        "name": "mynet",
        "type": "mycni-ipam",
        "ipam": {"type": "mycni-ipam", "dataDir": str(data_dir), **ipam},
    }


def environ(command: str, cid: str = "c1", cni_args: str = "") -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": "/var/run/netns/none",  # IPAM never opens it
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": cni_args,
    }


def run_in_process(
    command: str, conf: dict[str, Any], cid: str = "c1", cni_args: str = ""
) -> tuple[int, dict[str, Any]]:
    code, out = skel.run(
        PLUGIN, environ(command, cid, cni_args), json.dumps(conf).encode()
    )
    return code, json.loads(out) if out else {}


def run_executable(
    exe: list[str], extra_env: dict[str, str]
) -> Callable[..., tuple[int, dict[str, Any]]]:
    def run(
        command: str, conf: dict[str, Any], cid: str = "c1", cni_args: str = ""
    ) -> tuple[int, dict[str, Any]]:
        proc = subprocess.run(
            exe,
            input=json.dumps(conf).encode(),
            env={**os.environ, **extra_env, **environ(command, cid, cni_args)},
            capture_output=True,
            timeout=60,
            check=False,
        )
        out = proc.stdout.decode()
        assert "Traceback" not in out
        return proc.returncode, json.loads(out) if out.strip() else {}

    return run


@pytest.fixture(scope="module")
def pythonpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Import libcni from the repo and mycni_ipam from plugins/ipam, uninstalled."""
    shim = tmp_path_factory.mktemp("pythonpath")
    (shim / "mycni_ipam").symlink_to(REPO / "plugins" / "ipam")
    return os.pathsep.join([str(REPO), str(shim)])


@pytest.fixture(params=["in-process", "subprocess"])
def run(request: pytest.FixtureRequest, pythonpath: str) -> Runner:
    if request.param == "in-process":
        return run_in_process
    return run_executable(
        [sys.executable, "-m", "mycni_ipam"], {"PYTHONPATH": pythonpath}
    )


@pytest.mark.parametrize("ver", VERSIONS)
def test_add_check_del_del(run: Runner, tmp_path: Path, ver: str) -> None:
    conf = netconf(tmp_path, ver, routes=[{"dst": "0.0.0.0/0"}])

    code, result = run("ADD", conf)
    assert code == 0, result
    v4 = {"address": "10.1.0.2/24", "gateway": "10.1.0.1"}
    v6 = {"address": "fd00::2/64", "gateway": "fd00::1"}
    if not version.at_least(ver, "1.0.0"):
        v4, v6 = {"version": "4", **v4}, {"version": "6", **v6}
    assert result == {
        "cniVersion": ver,
        "ips": [v4, v6],
        "routes": [{"dst": "0.0.0.0/0"}],
    }

    if version.at_least(ver, "0.4.0"):
        assert run("CHECK", conf) == (0, {})
    assert run("DEL", conf) == (0, {})
    assert run("DEL", conf) == (0, {})
    if version.at_least(ver, "0.4.0"):
        code, err = run("CHECK", conf)
        assert (code, err["code"]) == (1, 3)
        assert err["msg"] == (
            "failed to check lease in network mynet: container c1 ifname eth0 holds "
            "no address in 10.1.0.0/24 (10.1.0.2-10.1.0.254)"
        )


def test_repeated_add_returns_the_same_addresses(run: Runner, tmp_path: Path) -> None:
    conf = netconf(tmp_path)

    first = run("ADD", conf)
    second = run("ADD", conf)
    other = run("ADD", conf, cid="c2")

    assert first == second
    assert other[1]["ips"][0]["address"] == "10.1.0.3/24"


def test_exhausted_range(run: Runner, tmp_path: Path) -> None:
    conf = netconf(tmp_path, ranges=[[{"subnet": "10.1.0.0/30"}]])
    assert run("ADD", conf, cid="c1")[0] == 0

    code, err = run("ADD", conf, cid="c2")

    assert code == 1
    assert err == {
        "cniVersion": "1.0.0",
        "code": 100,
        "msg": "failed to allocate for network mynet: range 10.1.0.0/30 "
        "(10.1.0.2-10.1.0.2) has no free address",
    }


def test_invalid_config(run: Runner, tmp_path: Path) -> None:
    conf = netconf(
        tmp_path,
        ranges=[
            [
                {"subnet": "10.1.0.0/24"},
                {"subnet": "10.2.0.0/24", "gateway": "10.9.0.9"},
            ]
        ],
    )

    code, err = run("ADD", conf)

    assert (code, err["code"]) == (1, 7)
    assert err["msg"] == "ipam.ranges[0][1].gateway: 10.9.0.9 is outside 10.2.0.0/24"


def test_requested_address(run: Runner, tmp_path: Path) -> None:
    conf = netconf(tmp_path)

    code, result = run("ADD", conf, cni_args="IgnoreUnknown=1;IP=10.1.0.42,fd00::42")
    taken = run("ADD", conf, cid="c2", cni_args="IP=10.1.0.42")
    outside = run("ADD", conf, cid="c3", cni_args="IP=10.7.0.1")

    assert code == 0
    assert [ip["address"] for ip in result["ips"]] == ["10.1.0.42/24", "fd00::42/64"]
    assert taken[1]["msg"] == (
        "failed to allocate for network mynet: requested address 10.1.0.42 is held "
        "by container c1 ifname eth0"
    )
    assert outside[1]["msg"] == (
        "failed to allocate for network mynet: requested address 10.7.0.1 is not "
        "in any range"
    )


def test_del_without_a_store_creates_nothing(run: Runner, tmp_path: Path) -> None:
    data_dir = tmp_path / "never-used"

    assert run("DEL", netconf(data_dir)) == (0, {})
    assert not data_dir.exists()


def test_version(pythonpath: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mycni_ipam"],
        input=b"{}",
        env={**os.environ, "PYTHONPATH": pythonpath, "CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=True,
    )

    assert json.loads(proc.stdout)["supportedVersions"] == list(VERSIONS)


def test_sixteen_concurrent_executables(tmp_path: Path, pythonpath: str) -> None:
    conf = json.dumps(netconf(tmp_path)).encode()
    env = {**os.environ, "PYTHONPATH": pythonpath}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mycni_ipam"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**env, **environ("ADD", cid=f"c{i}")},
        )
        for i in range(16)
    ]
    outs = [json.loads(p.communicate(conf, timeout=60)[0]) for p in procs]

    addresses = [ip["address"] for out in outs for ip in out["ips"]]
    assert len(addresses) == 32
    assert len(set(addresses)) == 32


# Same JSON to both plugins; they share a dataDir without clashing (host-local
# writes <dataDir>/<network>/, we write <dataDir>/leases.sqlite3).
SAME_SHAPE = {
    "legacy-v4": {"subnet": "10.1.0.0/24", "ranges": []},
    "dual-stack-routes": {
        "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.7"}],
    },
    "start-end-gateway": {
        "ranges": [
            [
                {
                    "subnet": "10.1.0.0/16",
                    "rangeStart": "10.1.4.10",
                    "rangeEnd": "10.1.4.20",
                    "gateway": "10.1.0.254",
                }
            ]
        ]
    },
    "gateway-is-range-start": {
        "ranges": [[{"subnet": "10.1.0.0/29", "rangeStart": "10.1.0.1"}]]
    },
    "unknown-keys": {
        "subnet": "10.1.0.0/24",
        "ranges": [],
        "resolvConf": "/etc/resolv.conf",
        "extra": {"a": 1},
    },
}

INVALID = {
    "host-bits": {"ranges": [[{"subnet": "10.1.0.1/24"}]]},
    "mixed-families": {
        "ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]
    },
    "start-after-end": {
        "ranges": [
            [
                {
                    "subnet": "10.1.0.0/24",
                    "rangeStart": "10.1.0.50",
                    "rangeEnd": "10.1.0.10",
                }
            ]
        ]
    },
    "overlapping-sets": {
        "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]
    },
    "too-small": {"ranges": [[{"subnet": "10.1.0.0/31"}]]},
    "start-outside": {
        "ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}]]
    },
    "no-ranges": {"ranges": []},
    "not-a-cidr": {"ranges": [[{"subnet": "banana"}]]},
}

needs_host_local = pytest.mark.skipif(
    not os.access(HOST_LOCAL, os.X_OK), reason=f"{HOST_LOCAL} is not installed"
)


@needs_host_local
@pytest.mark.parametrize("ver", ["0.3.1", "0.4.0", "1.0.0"])
@pytest.mark.parametrize("ipam", SAME_SHAPE.values(), ids=SAME_SHAPE.keys())
def test_first_add_matches_host_local(
    tmp_path: Path, ipam: dict[str, Any], ver: str
) -> None:
    conf = netconf(tmp_path, ver, **ipam)
    host_local = run_executable([str(HOST_LOCAL)], {})

    ours = run_in_process("ADD", conf)
    theirs = host_local("ADD", conf)

    assert ours[0] == theirs[0] == 0, (ours, theirs)
    if theirs[1].get("dns") == {}:
        del theirs[1]["dns"]  # host-local prints an empty "dns": {}, we omit it
    assert ours[1] == theirs[1]
    assert run_in_process("DEL", conf)[0] == host_local("DEL", conf)[0] == 0


@needs_host_local
@pytest.mark.parametrize("ipam", INVALID.values(), ids=INVALID.keys())
def test_invalid_config_rejected_like_host_local(
    tmp_path: Path, ipam: dict[str, Any]
) -> None:
    conf = netconf(tmp_path, **ipam)

    ours = run_in_process("ADD", conf)
    theirs = run_executable([str(HOST_LOCAL)], {})("ADD", conf)

    # host-local reports its config errors as 999 (untyped); ours carry code 7.
    assert (ours[0], ours[1]["code"]) == (1, 7)
    assert (theirs[0], theirs[1]["code"]) == (1, 999)
    assert "None" not in ours[1]["msg"] and "nil" not in ours[1]["msg"]


def test_gc_releases_all_but_the_valid_attachments(run: Runner, tmp_path: Path) -> None:
    conf = netconf(tmp_path, "1.1.0")
    for cid in ("c1", "c2", "c3"):
        assert run("ADD", conf, cid=cid)[0] == 0
    gc_conf = {
        **conf,
        "cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}],
    }

    assert run("GC", gc_conf) == (0, {})
    assert run("STATUS", conf) == (0, {})

    assert run("CHECK", conf, cid="c2") == (0, {})
    assert run("CHECK", conf, cid="c1")[1]["code"] == 3
    assert run("CHECK", conf, cid="c3")[1]["code"] == 3
    assert run("ADD", conf, cid="c4")[1]["ips"][0]["address"] == "10.1.0.5/24"


def test_gc_rejects_a_malformed_attachment_list(run: Runner, tmp_path: Path) -> None:
    conf = {**netconf(tmp_path, "1.1.0"), "cni.dev/valid-attachments": [{"x": 1}]}

    code, err = run("GC", conf)

    assert (code, err["code"]) == (1, 7)
    assert err["msg"].startswith("cni.dev/valid-attachments[0]: expected {containerID")


def test_gc_reads_the_legacy_attachments_key(run: Runner, tmp_path: Path) -> None:
    conf = netconf(tmp_path, "1.1.0")
    for cid in ("c1", "c2"):
        assert run("ADD", conf, cid=cid)[0] == 0
    gc_conf = {**conf, "cni.dev/attachments": [{"containerID": "c2", "ifname": "eth0"}]}

    assert run("GC", gc_conf) == (0, {})

    assert run("CHECK", conf, cid="c1")[1]["code"] == 3
    assert run("CHECK", conf, cid="c2") == (0, {})


REQUESTS = {
    "runtime-config-cidr": ({"runtimeConfig": {"ips": ["10.1.0.42/24"]}}, ""),
    "runtime-config-plain": ({"runtimeConfig": {"ips": ["fd00::42"]}}, ""),
    "args-cni": ({"args": {"cni": {"ips": ["10.1.0.42", "fd00::42"]}}}, ""),
    "cni-args": ({}, "IP=10.1.0.42"),
    "args-cni-wins-over-cni-args": (
        {"args": {"cni": {"ips": ["10.1.0.42"]}}},
        "IP=10.1.0.43",
    ),
    "runtime-config-and-cni-args": (
        {"runtimeConfig": {"ips": ["fd00::42"]}},
        "IP=10.1.0.42",
    ),
}


@pytest.mark.parametrize(("extra", "cni_args"), REQUESTS.values(), ids=REQUESTS.keys())
def test_requested_address_sources(
    tmp_path: Path, extra: dict[str, Any], cni_args: str
) -> None:
    conf = {**netconf(tmp_path), **extra}
    wanted = [
        a.split("/")[0]
        for a in extra.get("runtimeConfig", {}).get("ips", [])
        + extra.get("args", {}).get("cni", {}).get("ips", [])
    ]
    if not extra.get("args") and cni_args:
        wanted.append(cni_args.removeprefix("IP="))

    code, result = run_in_process("ADD", conf, cni_args=cni_args)

    assert code == 0, result
    got = {ip["address"].split("/")[0] for ip in result["ips"]}
    assert set(wanted) <= got
    assert "10.1.0.43" not in got


def test_requested_address_held_by_another_names_the_holder(tmp_path: Path) -> None:
    conf = netconf(tmp_path)
    run_in_process("ADD", conf, cid="c1", cni_args="IP=10.1.0.42")
    asked = {**conf, "runtimeConfig": {"ips": ["10.1.0.42/24"]}}

    code, err = run_in_process("ADD", asked, cid="c2")

    assert (code, err["code"]) == (1, 101)
    assert err["msg"] == (
        "failed to allocate for network mynet: requested address 10.1.0.42 is held "
        "by container c1 ifname eth0"
    )
    assert run_in_process("CHECK", conf, cid="c2")[1]["code"] == 3


def test_malformed_runtime_config_ips(tmp_path: Path) -> None:
    conf = {**netconf(tmp_path), "runtimeConfig": {"ips": ["10.1.0.x"]}}

    code, err = run_in_process("ADD", conf)

    assert (code, err["code"]) == (1, 7)
    assert err["msg"] == (
        'runtimeConfig.ips[0]: "10.1.0.x" is not an IP address or address/prefix'
    )


def test_two_ifnames_of_one_container_get_different_addresses(tmp_path: Path) -> None:
    conf = json.dumps(netconf(tmp_path)).encode()
    results = []
    for ifname in ("eth0", "net1", "eth0"):
        env = {**environ("ADD"), "CNI_IFNAME": ifname}
        code, out = skel.run(PLUGIN, env, conf)
        assert code == 0, out
        results.append(json.loads(out)["ips"])

    assert results[0] == results[2]
    assert {ip["address"] for ip in results[0]}.isdisjoint(
        ip["address"] for ip in results[1]
    )


def test_dual_stack_is_all_or_nothing(tmp_path: Path) -> None:
    conf = netconf(
        tmp_path, ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/126"}]]
    )  # fd00::2 and fd00::3 only
    assert run_in_process("ADD", conf, cid="c1")[0] == 0
    assert run_in_process("ADD", conf, cid="c2")[0] == 0

    code, err = run_in_process("ADD", conf, cid="c3")
    assert (code, err["code"]) == (1, 100)
    assert "fd00::/126" in err["msg"]

    # c3 got no IPv4 address either: the next container gets the next one.
    assert run_in_process("DEL", conf, cid="c1")[0] == 0
    code, result = run_in_process("ADD", conf, cid="c4")
    assert [ip["address"] for ip in result["ips"]] == ["10.1.0.4/24", "fd00::2/126"]


@pytest.fixture
def boot_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "boot_id"
    path.write_text("boot-a\n")
    monkeypatch.setattr(sqlite_store, "BOOT_ID_PATH", path)
    return path


def test_first_add_after_a_reboot_reclaims_earlier_leases(
    tmp_path: Path, boot_id: Path
) -> None:
    conf = netconf(tmp_path / "ipam", "1.1.0", ranges=[[{"subnet": "10.1.0.0/29"}]])
    for cid in ("c1", "c2", "c3", "c4", "c5"):  # .2-.6: the range is full
        assert run_in_process("ADD", conf, cid=cid)[0] == 0
    assert run_in_process("ADD", conf, cid="late")[1]["code"] == 100
    assert run_in_process("STATUS", conf)[1]["code"] == 50

    boot_id.write_text("boot-b\n")
    # STATUS already counts the earlier boot's leases as free.
    assert run_in_process("STATUS", conf) == (0, {})
    code, result = run_in_process("ADD", conf, cid="after")

    assert code == 0, result
    assert run_in_process("CHECK", conf, cid="c1")[1]["code"] == 3
    assert run_in_process("CHECK", conf, cid="after") == (0, {})
    # Only the first ADD of the new boot reclaims: its own leases stay.
    assert run_in_process("ADD", conf, cid="after2")[0] == 0
    assert run_in_process("CHECK", conf, cid="after") == (0, {})


def test_reclaim_after_reboot_can_be_turned_off(tmp_path: Path, boot_id: Path) -> None:
    conf = netconf(tmp_path / "ipam", reclaimAfterReboot=False)
    assert run_in_process("ADD", conf, cid="c1")[0] == 0

    boot_id.write_text("boot-b\n")
    assert run_in_process("ADD", conf, cid="c2")[0] == 0

    assert run_in_process("CHECK", conf, cid="c1") == (0, {})


def test_status_reports_free_addresses_per_range(tmp_path: Path) -> None:
    conf = netconf(
        tmp_path,
        "1.1.0",
        ranges=[
            [{"subnet": "10.1.0.0/30"}, {"subnet": "10.2.0.0/30"}],
            [{"subnet": "fd00::/64"}],
        ],
    )
    assert run_in_process("STATUS", conf) == (0, {})
    assert run_in_process("ADD", conf, cid="c1")[0] == 0
    assert run_in_process("STATUS", conf) == (0, {})
    assert run_in_process("ADD", conf, cid="c2")[0] == 0

    code, err = run_in_process("STATUS", conf)

    assert (code, err["code"]) == (1, 50)
    assert err["msg"] == (
        "failed to check status of network mynet: no free address in range set 0; "
        "free addresses per range: 10.1.0.0/30 (10.1.0.2-10.1.0.2) 0, "
        "10.2.0.0/30 (10.2.0.2-10.2.0.2) 0, "
        "fd00::/64 (fd00::2-fd00::ffff:ffff:ffff:ffff) 18446744073709551612"
    )
    assert run_in_process("DEL", conf, cid="c1")[0] == 0
    assert run_in_process("STATUS", conf) == (0, {})


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """directory turns read-only: by a read-only tmpfs remount as root (root ignores
    file modes), by file modes otherwise."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)
        return
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(directory)], check=True)


@pytest.fixture
def own_mount(tmp_path: Path) -> Iterator[Path]:
    """A directory of our own: a tmpfs as root (so it can be remounted read-only)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        yield mnt
        return
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_status_fails_when_the_store_is_not_writable(own_mount: Path) -> None:
    conf = netconf(own_mount, "1.1.0")
    assert run_in_process("STATUS", conf) == (0, {})

    with read_only(own_mount):
        code, err = run_in_process("STATUS", conf)

    assert (code, err["code"]) == (1, 50)
    assert err["msg"].startswith(
        "failed to check status of network mynet: lease store is not writable: "
    )
    assert str(own_mount) in err["msg"]
    assert run_in_process("STATUS", conf) == (0, {})


def test_gc_without_an_attachment_list_is_refused_and_releases_nothing(
    run: Runner, tmp_path: Path
) -> None:
    """Reading a missing list as "keep nothing" would free every pod's address."""
    conf = netconf(tmp_path, "1.1.0")
    assert run("ADD", conf, cid="c1")[0] == 0

    code, err = run("GC", conf)

    assert (code, err["code"]) == (1, 7)
    assert "cni.dev/valid-attachments" in err["msg"]
    assert run("CHECK", conf, cid="c1") == (0, {})


def test_check_and_status_do_not_queue_behind_a_writer(
    run: Runner, tmp_path: Path
) -> None:
    """Reads take no write lock: a burst of ADDs never makes CHECK answer 11."""
    conf = netconf(tmp_path, "1.1.0", lockTimeout=0.2)
    assert run("ADD", conf, cid="c1")[0] == 0
    writer = sqlite3.connect(tmp_path / "leases.sqlite3", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        assert run("CHECK", conf, cid="c1") == (0, {})
        code, err = run("ADD", conf, cid="c2")
        assert (code, err["code"]) == (1, 11)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
