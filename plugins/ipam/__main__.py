"""Entry point of the mycni-ipam executable: a CNI plugin, or `mycni-ipam inspect`."""

import os
import sys

from libcni import skel
from mycni_ipam.plugin import PLUGIN


def main() -> None:
    # A runtime always sets CNI_COMMAND and passes no arguments; only a person at a
    # shell types a subcommand, so the CNI path is unchanged.
    if (
        len(sys.argv) > 1
        and sys.argv[1] == "inspect"
        and "CNI_COMMAND" not in os.environ
    ):
        from mycni_ipam import inspect  # imported here: ADD never pays for argparse

        sys.exit(inspect.main(sys.argv[2:], prog="mycni-ipam inspect"))
    skel.main(PLUGIN)


if __name__ == "__main__":
    main()
