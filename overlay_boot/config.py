"""Parse a subhost configuration file into a frozen `Config` (SPEC §2).

Pure: reads the file (or is given its text); the ``!`` commands of its values are run only by
the runner the caller passes (``load_config(path, run=proc.run_command)``), never by this
module, which imports nothing that runs processes. It never looks at anything else on the host
(that is ``validate``'s job, and ``trust``'s for who may write the file: commands check that
before anything runs). Standard library only, because the systemd generator imports it.

Semantics kept from overlay-boot 1.6.4:

* ``VAR=value`` with VAR in column 1; the value is stripped; other lines are ignored.
* The first assignment of a variable counts (even an empty one, which means "the default");
  ``SHARE`` may repeat (1.6.4 also accepted blanks before its ``=``: ``SHARE = /srv``).
* A value is read as 1.6.4's ``read`` and ``eval`` left it where the meaning is plain: ``\\ ``
  is a blank, one pair of surrounding quotes (``'x'`` or ``"x"``) is removed, bytes that are
  not UTF-8 are carried through (surrogateescape: paths reach the kernel as the same bytes).
* ``!cmd`` runs ``cmd`` with ``CONFIG`` set (and ``ACTION=overlay-boot``); its first output
  line is the value. ``SHARE`` never runs commands.
* A relative ``BASE`` is taken from the directory of the config path as given (1.6.4's
  ``cd $(dirname $CONFIG)``), except for a config linked into a config directory
  (/etc/overlay-boot), whose link is followed; other relative paths are relative to ``BASE``.
* ``..`` in a path is left to the kernel (resolved after the symlink before it), never
  removed lexically; BASE alone is made canonical (realpath, as 1.6.4 did).

Every problem found is collected; one `ConfigError` carries them all.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from overlay_boot import capabilities as caps
from overlay_boot import naming
from overlay_boot.errors import ConfigError, Problem, SubhostError
from overlay_boot.record import Record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:  # the generator imports this module: keep its imports light
    from collections.abc import Callable
    from typing import Literal

    # Runs one `!` command: run(command, *, config=Path, cwd=str, timeout=float) returns its
    # value (the first line of its output) or raises SubhostError; proc.run_command is one.
    Runner = Callable[..., str]

KNOWN = (
    "NAME", "BASE", "LIVE", "UPPER", "WORK", "LOWER", "CABLES", "START", "RAM_SIZE",
    "SHARE", "PREMOUNT", "POSTMOUNT", "INIT", "LOG", "CAPABILITIES", "USERNS",
)
_KNOWN = frozenset(KNOWN)
# Order in which `!` commands run (they may have side effects, e.g. overlay-diskfile mounts):
# BASE first, because every other command runs in it.
_EVAL_ORDER = (
    "BASE", "NAME", "LOG", "CABLES", "LIVE", "UPPER", "WORK", "LOWER", "START",
    "PREMOUNT", "POSTMOUNT", "INIT", "RAM_SIZE",
)
DEFAULT_START = ("networking", "ssh")
# The problem of a `!` NAME when commands are not run: what is not run cannot name a subhost.
NAME_IS_COMMAND = "NAME is a command; the generator cannot run it: give a literal NAME"
DEFAULT_RAM_SIZE = "50M"

_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_SHARE_ASSIGN = re.compile(r"SHARE[ \t]*=(.*)")
_BLANKS = " \t\r\f\v"
# The kernel's memparse(): decimal, 0x hex or 0 octal, an optional K M G T P E suffix (either
# case); tmpfs also takes a percentage of RAM. Mount options may ride along after a comma.
_RAM_SIZE = re.compile(r"(?:0[xX][0-9A-Fa-f]+|[0-9]+)[kKmMgGtTpPeE]?|[0-9]+%")
# What tmpfs takes besides size= (Documentation/filesystems/tmpfs.rst), 1.6.4 passed them on.
_TMPFS_OPTIONS = frozenset(("nr_inodes", "nr_blocks", "mode", "uid", "gid", "huge", "mpol",
                            "inode32", "inode64", "noswap", "noatime"))
# Patterns of values most configs do not have: compiled (and cached by re) when first used,
# not at every import (every start and the generator import this module).
_MOUNT_OPTION = r"[A-Za-z0-9_]+(?:=[A-Za-z0-9_.:%+-]*)?"
_SERVICE = r"[A-Za-z0-9_.@+-]+"
_MAC_OCTET = r"[0-9A-Fa-f]{1,2}"
_VLAN_TAG = r"[1-9][0-9]{0,3}"
_DIGITS = r"[0-9]+"  # ASCII only: str.isdigit() takes "¹" too


class Cable(Record):
    """A veth pair: host end ``NAME<i>``, subhost end ``eth<i>``."""

    index: int
    host_if: str
    sub_if: str
    bridge: str | None
    mac: str | None  # normalised lower-case aa:bb:cc:dd:ee:ff
    line: int | None = None


class Vlan(Record):
    """A VLAN carried on a previous cable: ``NAME<i>.<tag>`` / ``eth<i>.<tag>``."""

    cable_index: int
    tag: int
    host_if: str
    sub_if: str
    bridge: str | None
    line: int | None = None


class Share(Record):
    """A host path bound into the subhost."""

    source: Path  # absolute host path
    target: Path  # absolute path inside the subhost
    line: int | None = None


class IdRange(Record):
    """USERNS=BASE[:COUNT]: host uids and gids BASE..BASE+COUNT-1 are 0..COUNT-1 inside."""

    base: int
    count: int = 65536

    @property
    def end(self) -> int:
        """The first host id after the range."""
        return self.base + self.count

    def overlaps(self, other: IdRange) -> bool:
        return self.base < other.end and other.base < self.end

    def map_line(self) -> str:
        """The line of /proc/PID/uid_map and gid_map."""
        return f"0 {self.base} {self.count}\n"

    def __str__(self) -> str:
        return f"{self.base}:{self.count}"


#: USERNS ranges start at or above this id: below it are the host's own users and groups.
USERNS_MIN_BASE = 65536
_ID_LIMIT = 1 << 32  # uid_t; (uid_t)-1 is no id


def parse_userns(value: str) -> tuple[IdRange | None, str | None]:
    """USERNS= text -> (range or None for ``no``, why it is wrong or None)."""
    if value in ("", "no"):
        return None, None
    base_text, colon, count_text = value.partition(":")
    if not re.fullmatch(_DIGITS, base_text) or (colon and not re.fullmatch(_DIGITS, count_text)):
        return None, (f"{value!r} is not 'no' or BASE[:COUNT] (decimal host uid/gid BASE, "
                      "COUNT ids, 65536 by default)")
    ids = IdRange(int(base_text), int(count_text) if colon else 65536)
    if ids.base < USERNS_MIN_BASE:
        return None, (f"BASE {ids.base} is below {USERNS_MIN_BASE}: the range must not "
                      "contain the host's own users (root, system and login accounts)")
    if ids.count < 1:
        return None, "COUNT must be at least 1"
    if ids.end > _ID_LIMIT - 1:
        return None, f"the range {ids.base}..{ids.end - 1} goes past the last uid {_ID_LIMIT - 2}"
    return ids, None


NO_GRANT = caps.Grant()  # CAPABILITIES= not given: one shared record (they are frozen)


class Config(Record):
    """A parsed configuration.

    With ``load_config(run=None)`` (the default) the variables in ``unresolved`` were ``!`` commands
    that were not run, and every field derived from them is None (paths), ``()`` (lower,
    cables, vlans, start) or left out (relative SHARE sources when BASE is unresolved).
    """

    path: Path  # absolute path of the config file as given (not symlink-resolved)
    name: str
    base: Path | None
    live: Path | None
    upper: Path | None
    work: Path | None
    lower: tuple[Path, ...]  # top first
    cables: tuple[Cable, ...] = ()
    vlans: tuple[Vlan, ...] = ()
    start: tuple[str, ...] = DEFAULT_START  # () for "none"
    ram_size: str | None = DEFAULT_RAM_SIZE  # None for "none"
    shares: tuple[Share, ...] = ()
    premount: str | None = None
    postmount: str | None = None
    init: str | None = None
    log: Path | None = None
    capabilities: caps.Grant = NO_GRANT  # CAPABILITIES=: beyond the default
    userns: IdRange | None = None  # USERNS=: the subhost's own user namespace, None for "no"
    warnings: tuple[str, ...] = ()
    lines: Mapping[str, int] = MappingProxyType({})  # immutable: one shared default
    unresolved: frozenset[str] = frozenset()

    @property
    def variant(self) -> Literal["overlay", "bind", "premounted"]:
        """The root filesystem variant of SPEC §2.1, comparing resolved paths.

        "overlay" when UPPER or LOWER is unknown (no runner) or LOWER has several layers.
        """
        if self.upper is None or len(self.lower) != 1:
            return "overlay"
        upper = os.path.realpath(self.upper)
        if upper != os.path.realpath(self.lower[0]):
            return "overlay"
        if self.live is not None and upper == os.path.realpath(self.live):
            return "premounted"
        return "bind"

    @property
    def interfaces(self) -> tuple[str, ...]:
        """Host-side interface names (cables, then VLANs)."""
        return tuple(c.host_if for c in self.cables) + tuple(v.host_if for v in self.vlans)

    @property
    def bridges(self) -> tuple[str, ...]:
        """Bridges named in CABLES, each once, in order."""
        seen: dict[str, None] = {}
        for b in [c.bridge for c in self.cables] + [v.bridge for v in self.vlans]:
            if b:
                seen[b] = None
        return tuple(seen)


# ---------------------------------------------------------------------------------------------
# reading the file


class _Assignment:
    """One ``VAR=value`` line (a plain class: made for every line of every config the
    generator reads)."""

    __slots__ = ("value", "line", "command")

    def __init__(self, value: str, line: int, command: bool = False):
        self.value = value  # a command keeps its text ("!cmd"); a literal value is read
        self.line = line
        self.command = command


def unquote(text: str) -> str:
    """TEXT without one pair of quotes around it all ('x' or "x", no such quote inside), as
    1.6.4's eval (or the subhost's shell, for START words) took them off. ``"a" "b"`` is
    two quoted words, not one: it stays (START takes the quotes off each word)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" \
            and text[0] not in text[1:-1]:
        return text[1:-1]
    return text


def read_value(text: str) -> str:
    """A literal value as 1.6.4 read it where the meaning is plain: ``\\`` before a blank
    (``my\\ dir``, 1.6.4's ``read`` without -r) is taken off, then one pair of surrounding
    quotes. Other backslashes stay (1.6.4 ate them all)."""
    return unquote(text.replace("\\ ", " ").replace("\\\t", "\t"))


def absolute(path: str | Path) -> Path:
    """PATH made absolute against the working directory, ``..`` left in place: the kernel
    resolves it after the symlink before it, as 1.6.4's paths were (os.path.abspath would
    remove it lexically and may name another file)."""
    text = os.fspath(path)
    if text.startswith("/"):
        return path if isinstance(path, Path) else Path(text)
    return Path(os.path.join(os.getcwd(), text))


def real_dir(path: str, known: dict[str, str]) -> str:
    """``os.path.realpath(PATH)``, remembered in KNOWN (one generator run resolves the same
    few directories for hundreds of configs: /etc/overlay-boot, /srv)."""
    real = known.get(path)
    if real is None:
        real = known[path] = os.path.realpath(path)
    return real


def canonical(path: str, known: dict[str, str] | None = None) -> str:
    """``os.path.realpath(PATH)``. With KNOWN (see `real_dir`) the directory is resolved once
    and only PATH's last component is looked at: the same answer, as realpath resolves the
    components in order."""
    head, tail = os.path.split(path)
    if known is None or tail in ("", ".", "..") or not head.startswith("/"):
        return os.path.realpath(path)
    real = os.path.join(real_dir(head, known), tail)
    return os.path.realpath(real) if os.path.islink(real) else real


def base_dir(path: Path, real_path: str | None = None) -> str:
    """The directory a relative BASE starts from: the config path's own directory as given
    (1.6.4: ``cd $(dirname $CONFIG)``), so symlinks to one template config in several subhost
    directories give each its BASE; for a config linked into a config directory
    (/etc/overlay-boot, a place 1.6.4 never read) the link is followed."""
    from overlay_boot import discovery  # lazily: discovery imports this module

    if os.path.islink(path) and any(
            os.path.realpath(path.parent) == os.path.realpath(d)
            for d in discovery.config_dirs()):
        return os.path.dirname(real_path or os.path.realpath(path))
    return str(path.parent)


MAX_SIZE = 1 << 20


def read_config(path: Path) -> tuple[str, os.stat_result]:
    """The text of the config file at PATH (see `read_config_fd`: FIFOs, devices and huge
    files are refused rather than hung on) and the status of the file read (its fstat: the
    generator's list of configs records it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(Problem(str(path), f"cannot read: {e.strerror or e}")) from None
    try:
        return _read_fd(fd, str(path))
    finally:
        os.close(fd)


def read_config_fd(fd: int, where: str) -> str:
    """The text of the config file open at FD (named WHERE in messages): a regular file of at
    most MAX_SIZE bytes, UTF-8 without NUL bytes."""
    return _read_fd(fd, where)[0]


def _read_fd(fd: int, where: str) -> tuple[str, os.stat_result]:
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(Problem(where, "not a regular file"))
        if st.st_size > MAX_SIZE:
            raise ConfigError(Problem(where, f"too large for a config ({st.st_size} bytes)"))
        # Reads of the size fstat gave (not one buffer of MAX_SIZE for each of hundreds of
        # small configs), to the end (a short read of a regular file) or just past MAX_SIZE
        # if the file grows meanwhile.
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_SIZE:
            wanted = max(st.st_size + 1 - size, 4096)
            chunk = os.read(fd, wanted)
            chunks.append(chunk)
            size += len(chunk)
            if len(chunk) < wanted:
                break
        data = b"".join(chunks)
    except OSError as e:
        raise ConfigError(Problem(where, f"cannot read: {e.strerror or e}")) from None
    if len(data) > MAX_SIZE:
        raise ConfigError(Problem(where, f"too large for a config (over {MAX_SIZE} bytes)"))
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise ConfigError(Problem(
            where, "binary file (contains a NUL byte), not a config: no value can carry one "
                   "to the kernel; remove it", line=line))
    # Bytes that are not UTF-8 (a Latin-1 comment, a path in another encoding) are carried
    # through as they are, as 1.6.4's sed and read did: paths reach the kernel as bytes.
    return data.decode("utf-8", "surrogateescape"), st


def _scan(text: str, path: str) -> tuple[dict[str, _Assignment], list[_Assignment], list[str]]:
    """First assignment of each variable, every SHARE, and warnings."""
    first: dict[str, _Assignment] = {}
    shares: list[_Assignment] = []
    warnings: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        m = _SHARE_ASSIGN.match(line) if line.startswith("SHARE") else None
        if m:  # SHARE never runs a command: its value is always read literally
            shares.append(_Assignment(read_value(m.group(1).strip(_BLANKS)), number))
            continue
        m = _ASSIGN.match(line)
        if not m:
            continue
        var, value = m.group(1), m.group(2).strip(_BLANKS)
        command = value.startswith("!")
        if not command:
            value = read_value(value)
        if var not in _KNOWN:
            warnings.append(f"{path}:{number}: unknown variable {var} ignored")
        elif var in first:
            warnings.append(
                f"{path}:{number}: {var} assigned again; the first assignment "
                f"(line {first[var].line}) counts"
            )
        else:
            first[var] = _Assignment(value, number, command)
    return first, shares, warnings


# ---------------------------------------------------------------------------------------------
# the parser


class _Parser:
    def __init__(self, path: Path, run: Runner | None, timeout: float,
                 real_dirs: dict[str, str] | None = None):
        self.path = path
        self.real_dirs = real_dirs
        self.where = str(path)
        self.run = run
        self.timeout = timeout
        self.problems: list[Problem] = []
        self.unresolved: set[str] = set()
        self.values: dict[str, str] = {}  # after `!` evaluation; missing = default/unresolved
        self.first: dict[str, _Assignment] = {}
        self.base: Path | None = None

    def problem(self, var: str | None, message: str, line: int | None = None) -> None:
        if line is None and var is not None and var in self.first:
            line = self.first[var].line
        self.problems.append(Problem(self.where, message, var, line))

    def line(self, var: str) -> int | None:
        a = self.first.get(var)
        return a.line if a else None

    # -- evaluation -----------------------------------------------------------------------

    def evaluate_all(self, config_dir: str) -> None:
        """Fill ``values`` with literal or evaluated values (in 1.6.4's order) and ``base``.

        BASE comes first: its command runs in CONFIG_DIR (`base_dir`) and every other command
        runs in BASE. BASE is canonical (realpath, as 1.6.4's ``realpath $BASE``).
        """
        for var in _EVAL_ORDER:
            a = self.first.get(var)
            if a is None or not a.value:
                continue
            if a.command:
                self._evaluate(var, a.value[1:].strip(_BLANKS), config_dir)
            else:
                self.values[var] = a.value
            if var == "BASE" and var in self.values:
                self.base = Path(canonical(os.path.join(config_dir, self.values[var]),
                                           self.real_dirs))

    def _evaluate(self, var: str, command: str, config_dir: str) -> None:
        if self.run is None:
            if var == "NAME":
                self.problem(var, NAME_IS_COMMAND)
            self.unresolved.add(var)
            return
        if not command:
            self.problem(var, "'!' without a command")
            return
        if var == "BASE":
            cwd = config_dir
        elif self.base is None:
            self.problem(var, "command not run: BASE is unusable")
            return
        elif not self.base.is_dir():
            self.problem(var, f"command not run: BASE {self.base} is not a directory")
            return
        else:
            cwd = str(self.base)
        try:
            self.values[var] = self.run(command, config=self.path, cwd=cwd,
                                        timeout=self.timeout)
        except SubhostError as e:
            self.problem(var, str(e))

    # -- paths ----------------------------------------------------------------------------

    def path_of(self, var: str, base: Path | None, default: str | None) -> Path | None:
        """A path variable: value (or default) relative to BASE; ``..`` is left to the kernel."""
        if var in self.unresolved:
            return None
        value = self.values.get(var, default)
        if value is None:
            return None
        return _host_path(value, base)

    def lower_of(self, base: Path | None) -> tuple[Path, ...]:
        if "LOWER" in self.unresolved:
            return ()
        value = self.values.get("LOWER", "/")
        parts = value.split(":")
        if "" in parts:
            self.problem("LOWER", f"{value!r} has an empty layer")
            return ()
        layers: list[Path] = []
        for part in parts:
            layer = _host_path(part, base)
            if layer is None:
                return ()
            layers.append(layer)
        return tuple(layers)

    # -- the other variables --------------------------------------------------------------

    def name_of(self) -> tuple[str, bool]:
        """NAME, and whether it is usable."""
        if "NAME" in self.values:
            name = self.values["NAME"]
            why = naming.name_problem(name)
            if why:
                self.problem("NAME", f"{why}: give another NAME")
            return name, why is None
        name = naming.name_from_file(self.path.name)
        why = naming.name_problem(name)
        if why and "NAME" not in self.unresolved:
            self.problem("NAME", f"{why}: the default NAME comes from the file name; "
                                 "give NAME=... or rename the file")
        return name, why is None

    def start_of(self, warnings: list[str]) -> tuple[str, ...]:
        """START's words, each without one pair of surrounding quotes (1.6.4 pasted START into
        a script for the subhost's shell). With INIT, START is not used: not checked either,
        as 1.6.4 never looked at it then."""
        if "START" in self.unresolved:
            return ()
        value = self.values.get("START")
        if value is None:
            return DEFAULT_START
        words = [unquote(w) for w in value.split()]
        if "INIT" in self.values or "INIT" in self.unresolved:
            warnings.append(f"{self.where}:{self.line('START')}: START is not used: INIT's "
                            "script runs instead of the built-in start of services")
            return ()
        if words == ["none"]:
            return ()
        for w in words:
            if w == "none":
                self.problem("START", "'none' must be the only word")
            elif w.startswith("/"):
                if "\0" in w:
                    self.problem("START", f"{w!r} is not a usable path")
            elif not re.fullmatch(_SERVICE, w) or w.startswith(("-", ".")):
                self.problem(
                    "START",
                    f"{w!r} is neither a service name ([A-Za-z0-9_.@+-], not starting with "
                    "'-' or '.') nor an absolute path",
                )
        return tuple(words)

    def ram_size_of(self) -> str | None:
        if "RAM_SIZE" in self.unresolved:
            return None
        value = self.values.get("RAM_SIZE", DEFAULT_RAM_SIZE)
        if value == "none":
            return None
        size, *options = value.split(",")
        if not _RAM_SIZE.fullmatch(size):
            self.problem(
                "RAM_SIZE",
                f"{size!r} is not a size tmpfs takes: a number (decimal, or 0x hex) with an "
                "optional K, M, G, T, P or E (either case), or a percentage of RAM such as "
                "10%; or 'none'",
            )
        for option in options:
            name = option.partition("=")[0]
            if not re.fullmatch(_MOUNT_OPTION, option) or name not in _TMPFS_OPTIONS:
                self.problem(
                    "RAM_SIZE",
                    f"{option!r} after the size is not a tmpfs mount option "
                    f"({', '.join(sorted(_TMPFS_OPTIONS))})",
                )
        return value

    def capabilities_of(self) -> caps.Grant:
        """CAPABILITIES= is read literally: a grant of power is never computed by a command."""
        a = self.first.get("CAPABILITIES")
        if a is None or not a.value:
            return NO_GRANT
        if a.command:
            self.problem("CAPABILITIES", "CAPABILITIES is never a command: list the names")
            return NO_GRANT
        grant, why = caps.parse(a.value)
        if why:
            self.problem("CAPABILITIES", why)
        return grant

    def userns_of(self) -> IdRange | None:
        """USERNS= is read literally, as CAPABILITIES=: who the subhost is on the host is
        never computed by a command."""
        a = self.first.get("USERNS")
        if a is None:
            return None
        if a.value.startswith("!"):
            self.problem("USERNS", "USERNS is never a command: give 'no' or BASE[:COUNT]")
            return None
        ids, why = parse_userns(a.value)
        if why:
            self.problem("USERNS", why)
        return ids

    def cables_of(self, name: str, name_ok: bool) -> tuple[tuple[Cable, ...], tuple[Vlan, ...]]:
        if "CABLES" in self.unresolved or "CABLES" not in self.values:
            return (), ()
        cables: list[Cable] = []
        vlans: list[Vlan] = []
        macs: dict[str, str] = {}
        tags: set[tuple[int, int]] = set()
        line = self.line("CABLES")
        for spec in self.values["CABLES"].split():
            if "=" not in spec:
                self.problem("CABLES", f"{spec!r} has no '=' (write [bridge]=[mac|.vlan])")
                continue
            bridge, right = spec.split("=", 1)
            if bridge:
                why = naming.ifname_problem(bridge)
                if why:
                    self.problem("CABLES", f"{spec!r} bridge {why}")
            if right.startswith("."):
                tag_text = right[1:]
                if not tag_text.isascii() or not tag_text.isdigit():
                    self.problem("CABLES", f"{spec!r} VLAN tag {tag_text!r} is not a number")
                    continue
                if not re.fullmatch(_VLAN_TAG, tag_text) or not 1 <= int(tag_text) <= 4094:
                    self.problem("CABLES", f"{spec!r} VLAN tag must be 1-4094")
                    continue
                tag = int(tag_text)
                if not cables:
                    self.problem(
                        "CABLES", f"{spec!r} a VLAN needs a cable before it to be carried on"
                    )
                    continue
                i = cables[-1].index
                if (i, tag) in tags:
                    self.problem("CABLES", f"{spec!r} VLAN {tag} on cable {i} given twice")
                    continue
                tags.add((i, tag))
                vlans.append(Vlan(i, tag, naming.host_vlan_if(name, i, tag),
                                  naming.sub_vlan_if(i, tag), bridge or None, line))
                continue
            mac = None
            if right:
                mac = _mac(right)
                if mac is None:
                    self.problem("CABLES", f"{spec!r} {right!r} is not a MAC address "
                                           "(six hex bytes separated by ':')")
                    continue
                first_octet = int(mac[:2], 16)
                if first_octet & 1:
                    self.problem("CABLES", f"{spec!r} {mac} is a multicast address; "
                                           "an interface needs a unicast MAC")
                    continue
                if mac == "00:00:00:00:00:00":
                    self.problem("CABLES", f"{spec!r} the all-zero MAC is not usable")
                    continue
                if mac in macs:
                    self.problem("CABLES", f"{spec!r} MAC {mac} is already used by "
                                           f"{macs[mac]!r}: two interfaces with one MAC on "
                                           "one network confuse every switch and ARP cache; "
                                           "give each cable its own MAC")
                    continue
                macs[mac] = spec
            i = len(cables)
            cables.append(Cable(i, naming.host_if(name, i), naming.sub_if(i), bridge or None,
                                mac, line))
        if name_ok:  # the subhost's ends (eth<i>, eth<i>.<tag>) are short enough whatever NAME is
            for ifname in [*(c.host_if for c in cables), *(v.host_if for v in vlans)]:
                why = naming.ifname_problem(ifname)
                if why:
                    self.problem(
                        "CABLES",
                        f"host end of a cable: {why}, which the kernel refuses (NAME<i> and "
                        "NAME<i>.<tag> are the host ends: shorten or change NAME, or use "
                        "fewer cables)",
                    )
        return tuple(cables), tuple(vlans)

    def shares_of(self, shares: list[_Assignment], base: Path | None,
                  lower: tuple[Path, ...]) -> tuple[Share, ...]:
        result: list[Share] = []
        if not shares:
            return ()
        lower_real = {os.path.realpath(p) for p in lower}
        for a in shares:
            if not a.value:
                continue
            host, sep, sub = a.value.partition(":")
            if not sep:
                sub = host
            if not host:
                self.problem("SHARE", f"{a.value!r} has no host path", a.line)
                continue
            if not sub:
                self.problem("SHARE", f"{a.value!r} has an empty subhost path", a.line)
                continue
            source = _host_path(host, base)
            if source is None:
                continue  # BASE unresolved (no runner)
            target = Path(os.path.normpath(os.path.join("/", sub)))
            if os.path.realpath(source) in lower_real:
                continue  # 1.6.4: a source equal to LOWER is skipped
            if target == Path("/"):
                self.problem("SHARE", f"{a.value!r}: cannot bind onto the subhost's root",
                             a.line)
                continue
            result.append(Share(source, target, a.line))
        return tuple(result)


_ROOT = Path("/")


def _host_path(value: str, base: Path | None) -> Path | None:
    """VALUE as a host path, relative to BASE (None when BASE is unknown). Not normalised:
    ``lnk/../x`` is where the kernel finds it, after following ``lnk``."""
    if value.startswith("/"):
        return _ROOT if value == "/" else Path(value)  # "/": LOWER's default, in every config
    return None if base is None else base / value  # as Path(os.path.join(…)), a third the cost


def _mac(text: str) -> str | None:
    parts = text.split(":")
    if len(parts) != 6 or not all(re.fullmatch(_MAC_OCTET, p) for p in parts):
        return None
    return ":".join(f"{int(p, 16):02x}" for p in parts)


def load_config(path: str | Path, *, run: Runner | None = None, command_timeout: float = 30.0,
                text: str | None = None, real_path: str | None = None,
                real_dirs: dict[str, str] | None = None) -> Config:
    """Parse the config file at ``path``; raise `ConfigError` with every problem found.

    ``!`` commands are run by RUN (`proc.run_command`), each within COMMAND_TIMEOUT seconds;
    ``run=None`` never runs them (the generator, every command that only reads a config): see
    `Config`. This reads the file by path and checks nothing about who may write it: a
    command that runs ``!`` values as root gets TEXT and REAL_PATH from `trust.load_trusted`,
    which checks first. REAL_DIRS remembers resolved directories across the calls of one
    generator run (`real_dir`).
    """
    abspath = absolute(path)
    if text is None:
        text = read_config(abspath)[0]
    p = _Parser(abspath, run, command_timeout, real_dirs)
    first, share_lines, warnings = _scan(text, str(abspath))
    p.first = first

    given = first.get("BASE")
    # Only a relative BASE or BASE's command needs the config's directory (for the others
    # the generator saves the symlink test of every config).
    relative = given is not None and (given.command or not given.value.startswith("/"))
    p.evaluate_all(base_dir(abspath, real_path) if relative else "/")
    base = p.base
    if base is None and "BASE" not in p.unresolved and "BASE" not in p.values \
            and not any(x.variable == "BASE" for x in p.problems):
        p.problem("BASE", "BASE is required (the subhost's base directory)")

    name, name_ok = p.name_of()
    live = p.path_of("LIVE", base, "live")
    upper = p.path_of("UPPER", base, "root")
    work = p.path_of("WORK", base, "work")
    lower = p.lower_of(base)
    cables, vlans = p.cables_of(name, name_ok)
    start = p.start_of(warnings)
    ram_size = p.ram_size_of()
    granted = p.capabilities_of()
    userns = p.userns_of()
    shares = p.shares_of(share_lines, base, lower)
    log_value = p.values.get("LOG")
    log = None if log_value in (None, "none") else p.path_of("LOG", base, None)

    if p.problems:
        raise ConfigError(p.problems)

    lines = {var: a.line for var, a in first.items()}
    if share_lines:
        lines["SHARE"] = share_lines[0].line
    return Config(
        path=abspath, name=name, base=base, live=live, upper=upper, work=work, lower=lower,
        cables=cables, vlans=vlans, start=start, ram_size=ram_size, shares=shares,
        premount=p.values.get("PREMOUNT"), postmount=p.values.get("POSTMOUNT"),
        init=p.values.get("INIT"), log=log, capabilities=granted, userns=userns,
        warnings=tuple(warnings),
        lines=MappingProxyType(lines), unresolved=frozenset(p.unresolved),
    )
