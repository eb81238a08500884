"""What a BPF object file must contain before the kernel sees it, checked offline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libcni.errors import BpfFailure, InvalidConfig, shown

# The kernel's license_is_gpl_compatible() (include/linux/license.h): a program that
# calls GPL-only helpers such as bpf_redirect_peer must carry one of these.
GPL_COMPATIBLE = frozenset(
    {
        "GPL",
        "GPL v2",
        "GPL and additional rights",
        "Dual BSD/GPL",
        "Dual MIT/GPL",
        "Dual MPL/GPL",
    }
)


@dataclass(frozen=True)
class ObjectSpec:
    """One program file: its name, the ELF section of its program and its maps."""

    file_name: str
    program_section: str
    map_names: tuple[str, ...]

    @property
    def name(self) -> str:
        """The program's name, and the name of its pin: the file name's stem."""
        return self.file_name.removesuffix(".bpf.o")


# On each pod's host veth: same-node redirect and the neigh path to other nodes.
FROM_POD = ObjectSpec(
    file_name="from_pod.bpf.o",
    program_section="tc",
    map_names=("mycni_ep4", "mycni_ep6", "mycni_stats", "mycni_ovl"),
)
# On the VXLAN device: frames from other nodes to local pods.
FROM_OVERLAY = ObjectSpec(
    file_name="from_overlay.bpf.o",
    program_section="tc",
    map_names=("mycni_ep4", "mycni_ep6", "mycni_stats"),
)
OBJECTS = (FROM_POD, FROM_OVERLAY)


def check_object(path: Path, spec: ObjectSpec) -> None:
    """Raise a CniError naming path and the defect unless it is a loadable object."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            _check_elf(elf, spec)
    except FileNotFoundError as exc:
        raise InvalidConfig(
            f"bpfObjectDir: failed to find BPF object {path}: no such file"
        ) from exc
    except OSError as exc:
        raise BpfFailure(f"failed to read BPF object {path}: {exc.strerror}") from exc
    except (ELFError, ValueError, EOFError) as exc:
        # pyelftools raises ELFError for a bad magic and struct/EOF errors for a
        # file cut short; both mean the same to the runtime.
        raise BpfFailure(
            f"failed to parse BPF object {path}: not a valid ELF file"
        ) from exc
    except _Defect as exc:
        raise BpfFailure(f"failed to check BPF object {path}: {exc}") from exc


class _Defect(Exception):
    """An object that parses as ELF but is not what the loader expects."""


def _check_elf(elf: Any, spec: ObjectSpec) -> None:
    machine = elf["e_machine"]
    if machine != "EM_BPF":
        raise _Defect(f"machine is {machine}, not EM_BPF")

    program = elf.get_section_by_name(spec.program_section)
    if program is None or program.data_size == 0:
        raise _Defect(f"no program in section {shown(spec.program_section)}")

    license_section = elf.get_section_by_name("license")
    if license_section is None:
        raise _Defect("no license section")
    license_text = license_section.data().split(b"\0", 1)[0].decode("ascii", "replace")
    if license_text not in GPL_COMPATIBLE:
        raise _Defect(f"license {shown(license_text)} is not GPL-compatible")

    missing = sorted(set(spec.map_names) - _map_names(elf))
    if missing:
        raise _Defect(f"missing maps in .maps: {', '.join(missing)}")


def _map_names(elf: Any) -> set[str]:
    """BTF-defined maps are the symbols that live in the .maps section."""
    maps_index = None
    for index, section in enumerate(elf.iter_sections()):
        if section.name == ".maps":
            maps_index = index
    symtab = elf.get_section_by_name(".symtab")
    if maps_index is None or symtab is None:
        return set()
    return {sym.name for sym in symtab.iter_symbols() if sym["st_shndx"] == maps_index}
