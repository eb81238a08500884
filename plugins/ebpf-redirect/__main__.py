"""Executable entry point: `ebpf-redirect`, run by the container runtime."""

from libcni import skel
from mycni_ebpf_redirect.plugin import PLUGIN


def main() -> None:
    skel.main(PLUGIN)


if __name__ == "__main__":
    main()
