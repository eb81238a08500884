"""Entry point of the mycni-ipam executable."""

from mycni_ipam.plugin import PLUGIN

from libcni import skel


def main() -> None:
    skel.main(PLUGIN)


if __name__ == "__main__":
    main()
