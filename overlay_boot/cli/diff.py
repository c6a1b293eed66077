"""overlay-diff: what a subhost's UPPER changes relative to the lower layers, and its drift.

    overlay-diff NAME|CONF [--json] [--shadowed] [PATH...]   the changed entries
    overlay-diff NAME|CONF --packages [--json] [PATH...]     the Debian packages they touch
    overlay-diff --dpkg-hook pre|post                        the apt hook (DPkg::Pre/Post-Invoke)

Works on a running or a stopped subhost and only reads (overlay_boot.drift has the rules).
Exit status 0 whatever the diff holds, 1 on a failure, 64 for bad arguments, 78 for a bad
config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import EX_USAGE, SubhostError, printable
from .common import UsageError, require_root, resolve_target, run_main

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..config import Config
    from ..drift import Entry, Layers


class Parser(argparse.ArgumentParser):
    """argparse, but bad arguments exit with EX_USAGE (64) as the other errors of the
    commands do."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: {message}\n")
        sys.exit(EX_USAGE)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="overlay-diff",
        description="Show what a subhost's upper layer changes relative to the lower layers: "
                    "added, modified, deleted and opaque entries, and which of them shadow a "
                    "lower version that changed after the subhost's copy (drift).",
        epilog="Reads only; works on a running or a stopped subhost. Exit status 0 whatever "
               "the diff holds.")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line (see overlay-diff(8))")
    parser.add_argument("--shadowed", action="store_true",
                        help="only the entries that shadow a newer lower version")
    parser.add_argument("--packages", action="store_true",
                        help="the Debian packages whose files the subhost changes, and the "
                             "packages whose installed version differs from the host's")
    parser.add_argument("--dpkg-hook", choices=("pre", "post"),
                        help="run as the apt hook (installed by the package)")
    parser.add_argument("target", metavar="NAME|CONF", nargs="?")
    parser.add_argument("paths", metavar="PATH", nargs="*",
                        help="only these paths (inside the subhost) and what is below them")
    args = parser.parse_intermixed_args(argv)
    if args.dpkg_hook:
        if args.target or args.json or args.shadowed or args.packages:
            parser.error("--dpkg-hook takes no other arguments")
        from .. import dpkghook

        return dpkghook.main(args.dpkg_hook)
    if args.target is None:
        parser.error("the following arguments are required: NAME|CONF")
    return run_main(lambda: _main(args), "overlay-diff")


def _main(args: argparse.Namespace) -> int:
    from .. import drift

    require_root()
    paths = subhost_paths(args.paths)
    name, config, _running = locate(args.target)
    layers = drift.layers_of(config)
    try:
        entries = drift.walk(layers, paths, shadowed_only=args.shadowed)
        if args.packages:
            _print_packages(layers, list(entries), args.json)
        else:
            _print_entries(entries, args.json)
    except OSError as exc:
        raise SubhostError(f"cannot read the layers of subhost {name}: {exc}") from None
    return 0


def subhost_paths(paths: list[str]) -> list[str]:
    for path in paths:
        if not path.startswith("/"):
            raise UsageError(f"PATH must be an absolute path inside the subhost: {path!r}")
    return paths


def locate(target: str, prog: str = "overlay-diff") -> tuple[str, Config, bool]:
    """(name, config read without running `!` commands, running?) of NAME or CONF."""
    from .. import state
    from ..config import load_config
    from ..discovery import find_instance

    name, path = resolve_target(target, prog)
    running = state.is_locked(name)
    if path is None:
        record = state.read(name) if running else None
        path = Path(record.config) if record else find_instance(name)
    return name, load_config(path), running


def entry_line(entry: Entry) -> str:
    flag = "shadowed" if entry.shadowed else "-"
    return (f"{entry.kind:<8} {entry.type:<7} {entry.size:>10} {flag:<8} "
            f"{printable(entry.path)}")


def json_line(entry: Entry) -> str:
    """The entry as one JSON object (what json.dumps(entry.as_dict()) gives, made faster:
    there may be a million of them). Strings are ASCII with escapes, so that a file name that
    is not UTF-8 still makes valid JSON."""
    from json.encoder import encode_basestring_ascii as quote

    lower = "null" if entry.lower is None else quote(entry.lower)
    shadowed = "true" if entry.shadowed else "false"
    return (f'{{"path": {quote(entry.path)}, "kind": "{entry.kind}", "type": "{entry.type}", '
            f'"shadowed": {shadowed}, "size": {entry.size}, "lower": {lower}}}')


def _print_entries(entries, as_json: bool) -> None:
    line = json_line if as_json else entry_line
    out = sys.stdout
    batch: list[str] = []
    for entry in entries:
        batch.append(line(entry))
        if len(batch) >= 4096:
            out.write("\n".join(batch) + "\n")
            batch.clear()
    if batch:
        out.write("\n".join(batch) + "\n")
    out.flush()


def _print_packages(layers: Layers, entries: list[Entry], as_json: bool) -> None:
    from ..packages import package_changes

    out = sys.stdout
    for change in package_changes(layers, entries):
        if as_json:
            out.write(json.dumps(change.as_dict()) + "\n")
            continue
        if change.files:
            files = ", ".join(printable(e.path) + (" (shadowed)" if e.shadowed else "")
                              for e in change.files)
            out.write(f"{change.package}  files: {files}\n")
        if change.version_differs:
            out.write(f"{change.package}  version: host {change.host_version or '-'}, "
                      f"subhost {change.subhost_version or '-'}\n")
    out.flush()


if __name__ == "__main__":
    sys.exit(main())
