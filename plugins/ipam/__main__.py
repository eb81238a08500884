"""Entry point of the mycni-ipam executable."""

from libcni import skel
from mycni_ipam.plugin import PLUGIN


def main() -> None:
    skel.main(PLUGIN)


if __name__ == "__main__":
    main()
