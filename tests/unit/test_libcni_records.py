"""Per-attachment records: escaping, atomic writes, listing and quiet removal."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from libcni.errors import Code, IOFailure
from libcni.records import NAME_MAX, Entry, RecordStore, escape, file_name

# Every code point, lone surrogates included: os.environ spells undecodable bytes so.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)


@settings(max_examples=300)
@given(any_text)
@example("eth\udcff")  # an undecodable byte in CNI_IFNAME, as os.environ gives it
@example("\ud800")
def test_escape_is_one_safe_component(part: str) -> None:
    escaped = escape(part)
    assert escaped not in ("", ".", "..") or part == ""
    assert "/" not in escaped and "\0" not in escaped
    assert escaped.isascii()


@settings(max_examples=300)
@given(any_text, any_text)
@example("\udcc3\udcbf", "\u00ff")  # the bytes of U+00FF, undecoded
def test_escape_is_injective(a: str, b: str) -> None:
    assert (escape(a) == escape(b)) == (a == b)


@pytest.mark.parametrize(
    ("part", "escaped"),
    [
        ("abc-DEF_09", "abc-DEF_09"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("a/b", "a%2Fb"),
        ("%2F", "%252F"),
        ("\u00e9", "%C3%A9"),
    ],
    ids=["safe", "dot", "dot-dot", "slash", "percent", "non-ascii"],
)
def test_escape_examples(part: str, escaped: str) -> None:
    assert escape(part) == escaped


def test_escape_never_yields_empty_for_a_non_empty_part() -> None:
    assert escape("") == ""  # never a whole file name: the ".json" suffix follows


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    return RecordStore.for_network(tmp_path, "net1")


def test_path_stays_inside_the_network_directory(tmp_path: Path) -> None:
    store = RecordStore.for_network(tmp_path, "../net")
    path = store.path("../../etc/passwd", "eth/0")
    assert path.parent == tmp_path / "%2E%2E%2Fnet"
    assert path.name == "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd.eth%2F0.json"


def test_save_then_load(store: RecordStore) -> None:
    store.save("c1", "eth0", {"hostVeth": "mc1234", "ips": ["10.1.0.3"]})
    assert store.load("c1", "eth0") == {
        "containerId": "c1",
        "ifname": "eth0",
        "hostVeth": "mc1234",
        "ips": ["10.1.0.3"],
    }
    assert store.load("c1", "eth1") is None
    assert store.load("c2", "eth0") is None


def test_save_replaces_and_leaves_no_temp_file(store: RecordStore) -> None:
    for n in range(3):
        store.save("c1", "eth0", {"n": n})
    assert store.load("c1", "eth0") == {"containerId": "c1", "ifname": "eth0", "n": 2}
    assert [p.name for p in store.directory.iterdir()] == ["c1.eth0.json"]


def test_failed_save_leaves_no_temp_file(store: RecordStore) -> None:
    with pytest.raises(TypeError):
        store.save("c1", "eth0", {"bad": object()})
    assert list(store.directory.iterdir()) == []


def test_save_into_an_unwritable_place_is_io_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store = RecordStore(tmp_path / "file" / "net1")
    with pytest.raises(IOFailure) as info:
        store.save("c1", "eth0", {})
    assert info.value.code == Code.IO_FAILURE
    assert "failed to write record" in info.value.msg


def test_directory_is_private(store: RecordStore) -> None:
    store.save("c1", "eth0", {})
    assert store.directory.stat().st_mode & 0o077 == 0


def test_longest_valid_container_id_can_be_saved(store: RecordStore) -> None:
    # The dispatcher accepts container IDs up to 255 characters.
    cid = "a" * 255
    store.save(cid, "eth0", {"n": 1})
    assert store.load(cid, "eth0") == {"containerId": cid, "ifname": "eth0", "n": 1}
    assert [e.container_id for e in store.entries()] == [cid]
    store.remove_quietly(cid, "eth0")
    assert list(store.directory.iterdir()) == []


def test_long_network_name_gets_a_directory(tmp_path: Path) -> None:
    store = RecordStore.for_network(tmp_path, "n" * 300)
    store.save("c1", "eth0", {})
    assert store.directory.parent == tmp_path
    assert len(store.directory.name) <= NAME_MAX


@settings(max_examples=100)
@given(st.lists(any_text, min_size=2, max_size=2), st.integers(0, 260))
def test_file_name_is_one_short_component(parts: list[str], pad: int) -> None:
    name = file_name((parts[0] + "x" * pad, parts[1]), ".json")
    assert len(name.encode()) <= NAME_MAX
    assert "/" not in name and name.endswith(".json")


def test_file_name_long_and_short_forms_differ() -> None:
    long = file_name(("a" * 300, "eth0"))
    assert long.startswith("=")
    assert long != file_name(("a" * 299, "eth0"))
    assert long != file_name(("a" * 300, "eth1"))
    assert file_name(("a", "b")) == "a.b"


@pytest.mark.parametrize(
    ("text", "what"),
    [("{", "failed to parse"), ("[]", "not an object")],
    ids=["truncated", "array"],
)
def test_load_of_a_corrupt_record_is_io_failure(
    store: RecordStore, text: str, what: str
) -> None:
    store.save("c1", "eth0", {})
    store.path("c1", "eth0").write_text(text)
    with pytest.raises(IOFailure) as info:
        store.load("c1", "eth0")
    assert what in info.value.msg


def test_entries_lists_every_record_and_skips_bad_ones(
    store: RecordStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.save("c2", "eth0", {"n": 2})
    store.save("c1", "net1", {"n": 1})
    store.save("../x", "eth0", {"n": 3})
    (store.directory / "corrupt.eth0.json").write_text("{")
    (store.directory / "anonymous.eth0.json").write_text(json.dumps({"n": 4}))
    (store.directory / "ignored.txt").write_text("not a record")
    with caplog.at_level(logging.WARNING, "libcni.records"):
        entries = sorted(store.entries(), key=lambda e: e.container_id)
    assert entries == [
        Entry("../x", "eth0", {"containerId": "../x", "ifname": "eth0", "n": 3}),
        Entry("c1", "net1", {"containerId": "c1", "ifname": "net1", "n": 1}),
        Entry("c2", "eth0", {"containerId": "c2", "ifname": "eth0", "n": 2}),
    ]
    assert len(caplog.records) == 2


def test_entries_of_a_missing_network_is_empty(tmp_path: Path) -> None:
    assert list(RecordStore.for_network(tmp_path, "nothing").entries()) == []


def test_remove_quietly_tolerates_already_gone(store: RecordStore) -> None:
    store.save("c1", "eth0", {})
    store.save("c1", "eth1", {})
    store.remove_quietly("c1", "eth0")
    store.remove_quietly("c1", "eth0")
    store.remove_quietly("never", "eth0")
    assert store.load("c1", "eth0") is None
    assert store.load("c1", "eth1") is not None


def test_remove_quietly_of_a_missing_directory(tmp_path: Path) -> None:
    RecordStore.for_network(tmp_path, "nothing").remove_quietly("c1", "eth0")
    assert not (tmp_path / "nothing").exists()


def test_record_is_complete_json_on_disk(store: RecordStore) -> None:
    store.save("c1", "eth0", {"x": "y" * 10_000})
    fd = os.open(store.path("c1", "eth0"), os.O_RDONLY)
    try:
        data = json.loads(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
    assert data["x"] == "y" * 10_000
