"""Executable entry point of the `vxlan` plugin."""

from libcni import skel
from mycni_vxlan.plugin import PLUGIN


def main() -> None:
    skel.main(PLUGIN)


if __name__ == "__main__":
    main()
