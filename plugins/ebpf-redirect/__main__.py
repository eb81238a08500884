"""Entry point of the ebpf-redirect executable: a CNI plugin, or `ebpf-redirect
inspect`."""

import os
import sys

from libcni import skel
from mycni_ebpf_redirect.plugin import PLUGIN


def main() -> None:
    # A runtime always sets CNI_COMMAND and passes no arguments; only a person at a
    # shell types a subcommand, so the CNI path is unchanged.
    if (
        len(sys.argv) > 1
        and sys.argv[1] == "inspect"
        and "CNI_COMMAND" not in os.environ
    ):
        # Imported here: ADD never pays for argparse.
        from mycni_ebpf_redirect import inspect

        sys.exit(inspect.main(sys.argv[2:]))
    skel.main(PLUGIN)


if __name__ == "__main__":
    main()
