"""overlay-share: attach a host directory into a running subhost, or detach it again.

    overlay-share HOSTDIR NAME [SUBHOSTDIR]            share HOSTDIR at SUBHOSTDIR inside NAME
    overlay-share --remove HOSTDIR NAME [SUBHOSTDIR]   detach it again
    overlay-share --remove NAME SUBHOSTDIR             detach the share at SUBHOSTDIR

SUBHOSTDIR defaults to HOSTDIR's own path. This is the command's face: arguments, which
subhost, messages. The mechanism (a slave clone of HOSTDIR's mounts attached inside the
subhost's mount namespace; the target resolved by descriptor in its root; overlay-boot's own
mounts never detached) is ``linux/share.py``, which the D-Bus service calls too.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from ..linux import share
from ..naming import is_valid_name
from .common import UsageError, require_root, resolve_target, run_main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_main(lambda: _main(request_of(args)), "overlay-share")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="overlay-share",
        usage="%(prog)s [--remove] HOSTDIR NAME|CONF [SUBHOSTDIR]\n"
              "       %(prog)s --remove NAME SUBHOSTDIR",
        description="Share a host directory with a running overlay-boot subhost (a bind mount "
                    "inside it), or with --remove detach it again.",
        epilog="SUBHOSTDIR defaults to the same path as HOSTDIR. The share lasts until it is "
               "removed or the subhost stops. --remove NAME SUBHOSTDIR (NAME a subhost name, "
               "SUBHOSTDIR an absolute path, not a file on the host) detaches whatever share "
               "is at SUBHOSTDIR.",
    )
    parser.add_argument("--remove", action="store_true",
                        help="detach the share at SUBHOSTDIR (HOSTDIR may be gone)")
    parser.add_argument("hostdir", metavar="HOSTDIR")
    parser.add_argument("name", metavar="NAME|CONF")
    parser.add_argument("subhostdir", metavar="SUBHOSTDIR", nargs="?")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Request:
    """What to do: share HOSTDIR at TARGET inside the subhost given by SUBHOST (a NAME or a
    CONF), or remove the share there (HOSTDIR None: whichever share it is)."""

    remove: bool
    hostdir: str | None  # as given
    subhost: str
    target: str  # absolute, normalised


def request_of(args: argparse.Namespace) -> Request:
    if args.remove and args.subhostdir is None and _names_a_target(args.hostdir, args.name):
        return Request(True, None, args.hostdir, _target(args.name, remove=True))
    target = args.subhostdir or os.path.abspath(args.hostdir)
    return Request(args.remove, args.hostdir, args.name, _target(target, args.remove))


def _names_a_target(first: str, second: str) -> bool:
    """``--remove NAME SUBHOSTDIR`` rather than ``--remove HOSTDIR NAME|CONF``: a subhost name
    first, then an absolute path that is no file on the host (a CONF is one: it is read; a
    trailing "/" always makes it a directory)."""
    return is_valid_name(first) and second.startswith("/") and not os.path.isfile(second)


def _target(path: str, remove: bool) -> str:
    """SUBHOSTDIR normalised. Whether it is one of overlay-boot's own mounts is found out
    inside, where it resolves (``linux/share.py``)."""
    if not path.startswith("/"):
        raise UsageError(f"SUBHOSTDIR must be an absolute path: {path}")
    target = os.path.normpath(path)
    if target == "/" and not remove:
        raise UsageError("cannot share onto the subhost's root directory")
    return target


def _main(request: Request) -> int:
    require_root()
    name, _ = resolve_target(request.subhost, "overlay-share")
    if request.remove:
        hostdir = None if request.hostdir is None else os.path.abspath(request.hostdir)
        share.unshare(name, request.target, hostdir)
        what = "" if hostdir is None else f" {hostdir}"
        print(f"stopped sharing{what} with subhost {name} at {request.target}")
        return 0
    hostdir = os.path.abspath(request.hostdir or "")
    share.share(name, hostdir, request.target)
    print(f"sharing {hostdir} with subhost {name} at {request.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
