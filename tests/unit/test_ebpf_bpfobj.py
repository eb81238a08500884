"""ELF checks on the real from_pod object and on defective copies crafted from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from libcni.errors import BpfFailure, CniError, InvalidConfig
from mycni_ebpf_redirect.bpfobj import FROM_POD, check_object
from tests.ebpf_fixtures import from_pod_object  # noqa: F401  (fixture)

Patch = Callable[[bytearray, ELFFile], None]


def section_name_offset(elf: ELFFile, name: str) -> int:
    shstrtab = elf.get_section(elf["e_shstrndx"])
    section = elf.get_section_by_name(name)
    return int(shstrtab["sh_offset"] + section["sh_name"])


def symbol_name_offset(elf: ELFFile, name: str) -> int:
    symtab = elf.get_section_by_name(".symtab")
    strtab = elf.get_section(symtab["sh_link"])
    (sym,) = symtab.get_symbol_by_name(name)
    return int(strtab["sh_offset"] + sym["st_name"])


def rename_section(old: bytes, new: bytes) -> Patch:
    def patch(raw: bytearray, elf: ELFFile) -> None:
        at = section_name_offset(elf, old.decode())
        raw[at : at + len(new)] = new

    return patch


def rename_symbol(old: bytes, new: bytes) -> Patch:
    def patch(raw: bytearray, elf: ELFFile) -> None:
        at = symbol_name_offset(elf, old.decode())
        raw[at : at + len(new)] = new

    return patch


def set_license(text: bytes) -> Patch:
    def patch(raw: bytearray, elf: ELFFile) -> None:
        section = elf.get_section_by_name("license")
        at, size = section["sh_offset"], section["sh_size"]
        raw[at : at + size] = text.ljust(size, b"\0")[:size]

    return patch


def set_machine(number: int) -> Patch:
    def patch(raw: bytearray, elf: ELFFile) -> None:
        raw[18:20] = number.to_bytes(2, "little")  # e_machine; BPF objects are LE here

    return patch


def crafted(source: Path, tmp_path: Path, patch: Patch) -> Path:
    raw = bytearray(source.read_bytes())
    with source.open("rb") as f:
        patch(raw, ELFFile(f))
    out = tmp_path / "crafted.bpf.o"
    out.write_bytes(raw)
    return out


def test_real_object_passes(from_pod_object: Path) -> None:  # noqa: F811
    check_object(from_pod_object, FROM_POD)


@pytest.mark.parametrize(
    ("patch", "complaint"),
    [
        (set_machine(62), "machine is EM_X86_64, not EM_BPF"),
        (rename_section(b"tc", b"tx"), 'no program in section "tc"'),
        (rename_section(b"license", b"lisense"), "no license section"),
        (set_license(b"MIT"), 'license "MIT" is not GPL-compatible'),
        (set_license(b"BSD"), 'license "BSD" is not GPL-compatible'),
        (rename_symbol(b"mycni_ep4", b"mycni_xx4"), "missing maps in .maps: mycni_ep4"),
    ],
    ids=["x86-machine", "no-tc-section", "no-license", "mit", "bsd", "no-ep4"],
)
def test_defects_are_named(
    from_pod_object: Path,  # noqa: F811
    tmp_path: Path,
    patch: Patch,
    complaint: str,
) -> None:
    bad = crafted(from_pod_object, tmp_path, patch)
    with pytest.raises(BpfFailure) as info:
        check_object(bad, FROM_POD)
    assert info.value.msg == f"failed to check BPF object {bad}: {complaint}"


@pytest.mark.parametrize(
    "content",
    [b"", b"\x7fELF", b"#!/bin/sh\necho not an object\n"],
    ids=["empty", "magic-only", "script"],
)
def test_non_elf_is_bpf_failure(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "from_pod.bpf.o"
    bad.write_bytes(content)
    with pytest.raises(BpfFailure, match=f"failed to parse BPF object {bad}"):
        check_object(bad, FROM_POD)


def test_truncated_object_is_bpf_failure(
    from_pod_object: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    bad = tmp_path / "from_pod.bpf.o"
    bad.write_bytes(from_pod_object.read_bytes()[:200])
    with pytest.raises(CniError) as info:
        check_object(bad, FROM_POD)
    assert str(bad) in info.value.msg
    assert info.value.code == BpfFailure.code


def test_missing_file_is_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="bpfObjectDir: failed to find BPF object"):
        check_object(tmp_path / "nope.bpf.o", FROM_POD)
