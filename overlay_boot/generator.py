"""The systemd generator: one drop-in per subhost config for ``overlay-boot@NAME.service``.

systemd runs ``overlay-boot-generator NORMAL EARLY LATE`` early at boot and at every
``daemon-reload`` (systemd.generator(7)): no D-Bus, no other units, maybe no /var. So this only
parses (``load_config`` without a runner: no ``!`` command runs, nothing is mounted or created
outside the output directory) and imports nothing beyond the standard library and the pure
layer. One bad or duplicate config is reported and skipped; the others are still generated.

For ``NAME`` from ``/etc/overlay-boot/web.conf`` it writes into NORMAL::

    overlay-boot@NAME.service.d/50-overlay-boot.conf   config path, SourcePath=,
                                                       RequiresMountsFor=, After= bridges
    multi-user.target.wants/overlay-boot@NAME.service  only for configs in /etc/subhosts.conf

Other modes: ``--dry-run`` prints what would be written; ``--verify [CONF|NAME ...]`` is
``overlay-boot --verify`` (overlay_boot/verify.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from overlay_boot import capabilities as caps
from overlay_boot import discovery, knownlist, naming, unitfile
from overlay_boot.config import Config, absolute, load_config, read_config
from overlay_boot.errors import EX_USAGE, ConfigError, Problem, printable
from overlay_boot.record import Record

PROG = "overlay-boot-generator"
TEMPLATE = "overlay-boot@.service"
DROPIN = "50-overlay-boot.conf"
WANTED_BY = "multi-user.target"
TEMPLATE_ENV = "OVERLAY_BOOT_TEMPLATE"  # path of the template unit, for tests
# Where the template may be installed, in systemd's order (systemd.unit(5), system units).
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/usr/lib/systemd/system", "/lib/systemd/system")
ERR, WARNING = 3, 4


class Output(Record):
    """One file to create under the output directory: text, or a symlink."""

    relpath: str
    text: str | None = None
    link: str | None = None


class Message(Record):
    priority: int  # syslog: 3 error, 4 warning
    text: str

    def __post_init__(self) -> None:
        # One message is one log line, whatever a file name holds (a line break could
        # otherwise forge a report about another file).
        object.__setattr__(self, "text", printable(self.text))


class Result(Record):
    outputs: tuple[Output, ...]
    messages: tuple[Message, ...]
    generated: tuple[Config, ...]
    parsed: tuple[tuple[Config, Path], ...] = ()  # every config that parsed, as listed
    # The status (fstat) of each config file as it was read, by its path as listed.
    statuses: Mapping[str, os.stat_result] = MappingProxyType({})

    @property
    def failed(self) -> bool:
        return any(m.priority <= ERR for m in self.messages)


def template_path(unit_dir: str | None = None) -> str:
    """The template unit the wants symlinks point to (systemd only uses the link's name)."""
    override = os.environ.get(TEMPLATE_ENV)
    if override:
        return override
    for d in ((unit_dir,) if unit_dir else ()) + UNIT_DIRS:
        candidate = os.path.join(d, TEMPLATE)
        if os.path.exists(candidate):
            return candidate
    return os.path.join("/usr/lib/systemd/system", TEMPLATE)


# ---------------------------------------------------------------------------------------------
# rendering: pure


def mount_paths(config: Config) -> list[Path]:
    """Paths whose mounts the subhost needs: BASE, UPPER, each LOWER, LIVE (those known)."""
    paths: dict[str, Path] = {}  # by their text: one Path per place, in order
    for p in (config.base, config.upper, *config.lower, config.live):
        if p is None:
            continue
        text = str(p)
        if "/../" in text + "/":  # systemd takes normalised paths only
            p = Path(os.path.realpath(text))  # ".." after a symlink: where the kernel goes
            text = str(p)
        paths.setdefault(text, p)
    return list(paths.values())


def _unit_text(path: str) -> str:
    """``path`` if a unit file can hold it; ValueError otherwise (systemd reads unit files and
    environment values as UTF-8, so a path with other bytes cannot be named there)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{printable(path)} is not valid UTF-8, which a unit file cannot "
                         "name: rename it, or link it from /etc/overlay-boot under a UTF-8 "
                         "name") from None
    unitfile.quote(path)  # refuses control characters before anything is written
    return path


def render_dropin(config: Config, origin: str = PROG, *, removed_at_stop: bool = False) -> str:
    """The drop-in text for ``config``. REMOVED_AT_STOP: it is the runtime drop-in of
    ``overlay-boot CONF``, which the template's ExecStopPost= removes. Raises ValueError for a
    path no unit file can hold."""
    source = _unit_text(str(config.path))
    lines = [
        f"# Generated by {origin} from {source}",
        "# Do not edit: edit the config file and run 'systemctl daemon-reload'.",
        "",
        "[Unit]",
        f"SourcePath={unitfile.specifiers(source)}",
    ]
    for path in mount_paths(config):
        try:
            lines.append(f"RequiresMountsFor={unitfile.quote(str(path))}")
        except ValueError:
            continue  # cannot be expressed; the supervisor reports the path if it is wrong
    for bridge in config.bridges:
        lines.append(f"After={unitfile.net_device_unit(bridge)}")
    lines += [
        "",
        "[Service]",
        f"Environment={unitfile.quote('OVERLAY_BOOT_CONFIG=' + source)}",
        *service_lines(config),
    ]
    if config.userns is None and not removed_at_stop:
        lines += [
            "# PID 1 removes what it made on the host at a clean stop, and a crash is cleaned",
            "# up by overlay-boot-cleanup@.service (OnFailure=): nothing to run after a stop.",
            "ExecStopPost=",
        ]
    return "\n".join([*lines, ""])


#: PID 1 gives each START word this long to stop (linux/init.py STOP_TIMEOUT), then the rest
#: of the subhost a grace period and a SIGKILL: the unit must wait for all of that.
STOP_SECONDS_PER_SERVICE = 30
STOP_SECONDS_BASE = 15  # grace period, SIGKILL, teardown
UNIT_STOP_SECONDS = 120  # overlay-boot@.service's TimeoutStopSec=


#: What overlay-boot@.service takes from the bounding set (units/overlay-boot@.service.in).
UNIT_DROPPED_CAPABILITIES = (
    "sys_module", "sys_time", "wake_alarm", "block_suspend", "syslog", "mac_admin",
    "mac_override", "audit_control", "audit_read", "bpf", "perfmon", "sys_pacct", "sys_boot",
)
#: Capabilities whose system calls the unit's SystemCallFilter= refuses besides.
_FILTERED_WITH = frozenset(("sys_time", "sys_module", "sys_rawio", "sys_boot", "sys_admin",
                            "dac_read_search", "syslog"))


def capability_lines(grant: caps.Grant) -> list[str]:
    """What the unit must give back for CAPABILITIES= (README "Security model")."""
    if not grant.added:
        return []
    wanted = UNIT_DROPPED_CAPABILITIES if grant.everything else \
        [n for n in grant.added if n in UNIT_DROPPED_CAPABILITIES]
    # A bounding set line without "~" adds to the unit's ("~…": all but those).
    lines = [f"CapabilityBoundingSet={' '.join('CAP_' + n.upper() for n in wanted)}"] \
        if wanted else []
    if grant.everything:  # 1.6.4's full root: every restriction of the unit undone
        return lines + ["SystemCallFilter=", "SystemCallErrorNumber=", "ProtectClock=no",
                        "DevicePolicy=auto", "DeviceAllow=", "RestrictRealtime=no"]
    if _FILTERED_WITH & set(grant.added):
        lines.append("SystemCallFilter=")
    if {"sys_time", "wake_alarm"} & set(grant.added):
        lines.append("ProtectClock=no")
    return lines


def service_lines(config: Config) -> list[str]:
    """[Service] settings this subhost needs beyond the template unit's."""
    lines: list[str] = []
    stop = STOP_SECONDS_BASE + STOP_SECONDS_PER_SERVICE * len(config.start)
    if stop > UNIT_STOP_SECONDS:  # stop scripts are never cut short by systemd's SIGKILL
        lines.append(f"TimeoutStopSec={stop}s")
    lines += capability_lines(config.capabilities)
    for share in config.shares:  # a shared device node is the admin's explicit device grant
        if Path("/dev") in share.source.parents:
            try:
                lines.append(f"DeviceAllow={unitfile.quote(str(share.source))} rw")
            except ValueError:
                continue
    return lines


def late_name(path: Path) -> str:
    """The NAME a config that cannot be read yet is taken to have: its file name's."""
    name = path.name[: -len(".conf")] if path.name.endswith(".conf") else path.name
    why = naming.name_problem(name)
    if why:
        raise ValueError(f"the subhost name {name!r} from its file name is unusable ({why})")
    return name


def render_late(path: Path, *, wanted: bool, template: str) -> list[Output]:
    """A config that cannot be read yet (on a file system mounted after generators run, such
    as a separate /opt or /srv): its unit is named after the file, waits for the mounts of the
    config's path, and reads it when it starts — which refuses it if its NAME is another."""
    name = late_name(path)
    source = _unit_text(str(path))
    waits = [source]
    if path.is_symlink():  # /etc/overlay-boot/NAME.conf -> /opt/NAME/NAME.conf
        target = os.path.join(os.path.dirname(source), os.readlink(path))
        waits.append(_unit_text(os.path.normpath(target)))
    lines = [
        f"# Generated by {PROG} from {source}, which could not be read at boot yet: it is",
        "# read when the unit starts, once the file systems it needs are mounted.",
        "",
        "[Unit]",
        f"SourcePath={unitfile.specifiers(source)}",
        *(f"RequiresMountsFor={unitfile.quote(w)}" for w in waits),
        "",
        "[Service]",
        f"Environment={unitfile.quote('OVERLAY_BOOT_CONFIG=' + source)}",
        "",
    ]
    unit = naming.unit_name(name)
    outputs = [Output(f"{unit}.d/{DROPIN}", text="\n".join(lines))]
    if wanted:
        outputs.append(Output(f"{WANTED_BY}.wants/{unit}", link=template))
    return outputs


def render(config: Config, *, wanted: bool, template: str) -> list[Output]:
    unit = naming.unit_name(config.name)
    outputs = [Output(f"{unit}.d/{DROPIN}", text=render_dropin(config))]
    if wanted:
        outputs.append(Output(f"{WANTED_BY}.wants/{unit}", link=template))
    return outputs


# ---------------------------------------------------------------------------------------------
# discovery + parsing: no `!` command runs


def generate(*, dirs: Sequence[Path] | None = None, subhosts: Path | None = None,
             template: str | None = None,
             load: Callable[[Path], Config] | None = None) -> Result:
    """Everything the generator would write, and what it has to say. Never raises for a
    config: each problem becomes a message and that config is skipped."""
    real_dirs: dict[str, str] = {}  # the few directories hundreds of BASEs are in
    statuses: dict[str, os.stat_result] = {}

    def read_and_load(path: Path) -> Config:
        text, statuses[str(path)] = read_config(path)  # knownlist needs no stat of its own
        return load_config(path, text=text, real_dirs=real_dirs)

    load = load or read_and_load
    template = template or template_path()
    messages: list[Message] = []
    outputs: list[Output] = []
    generated: list[Config] = []
    parsed: list[tuple[Config, Path]] = []
    problems: list[Problem] = []
    found = discovery.discover(dirs=dirs, subhosts=subhosts, problems=problems)
    messages += [Message(WARNING, str(p)) for p in problems]
    claimed: dict[str, Path] = {}  # NAME -> the file that has it (valid or not)
    for f in found:
        try:
            config = load(f.path)
        except Exception as e:  # noqa: BLE001 - one config must never stop the generator
            # Asked only now, when it could not be read: one stat less for each config.
            if not os.path.exists(f.path):  # missing, or on a file system not mounted yet
                try:
                    name = late_name(f.path)
                    if name in claimed:
                        raise ValueError(f"NAME {name} is already used by {claimed[name]}")
                    outputs += render_late(f.path, wanted=f.wanted, template=template)
                except ValueError as late:
                    messages.append(Message(ERR, f"{f.path}: {late}; skipped"))
                    continue
                claimed[name] = f.path
                messages.append(Message(WARNING, f"{f.path}: cannot be read yet; its unit "
                                                 "reads it when it starts"))
            elif isinstance(e, ConfigError):
                messages += [Message(ERR, str(p)) for p in e.problems]
                messages.append(Message(ERR, f"{f.path}: skipped"))
                claimed.setdefault(discovery.declared_name(f.path), f.path)
            else:
                messages.append(Message(ERR, f"{f.path}: skipped: unexpected error: {e!r}"))
            continue
        messages += [Message(WARNING, w) for w in config.warnings]
        parsed.append((config, f.path))
        if config.name in claimed:
            messages.append(Message(ERR, f"{f.path}: NAME {config.name} is already used by "
                                         f"{claimed[config.name]}; skipped"))
            continue
        claimed[config.name] = f.path
        try:
            outputs += render(config, wanted=f.wanted, template=template)
        except ValueError as e:
            messages.append(Message(ERR, f"{f.path}: {e}; skipped"))
            continue
        generated.append(config)
    return Result(tuple(outputs), tuple(messages), tuple(generated), tuple(parsed),
                  MappingProxyType(statuses))


def write(outputs: Sequence[Output], dest: Path) -> list[Message]:
    """Create ``outputs`` under ``dest`` (replacing files of the same name). One that fails
    leaves nothing half-written and stops no other: a new file is removed again when writing
    it fails, an existing one is replaced by a rename of a complete file. (systemd hands a
    generator empty directories, so the rename is rarely needed: a boot with hundreds of
    subhosts saves its system calls.)"""
    failed: list[Message] = []
    made: set[str] = set()
    where = os.fspath(dest)
    for out in outputs:
        target = os.path.join(where, out.relpath)
        parent = os.path.dirname(target)
        try:
            if parent not in made:
                try:
                    os.mkdir(parent, 0o755)
                except FileExistsError:
                    pass
                except FileNotFoundError:
                    os.makedirs(parent, exist_ok=True)
                made.add(parent)
            if out.link is not None:
                _write_link(out.link, target)
            else:
                _write_text((out.text or "").encode("utf-8"), target)
        except (OSError, UnicodeEncodeError) as e:
            failed.append(Message(ERR, f"{target}: cannot write: {e}"))
    return failed


def _write_link(link: str, target: str) -> None:
    try:
        os.symlink(link, target)
        return
    except FileExistsError:
        pass
    temporary = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.new")
    try:
        os.unlink(temporary)
    except FileNotFoundError:
        pass
    os.symlink(link, temporary)
    os.replace(temporary, target)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def _write_text(data: bytes, target: str) -> None:
    try:
        fd = os.open(target, _NEW_FILE, 0o644)
    except FileExistsError:
        temporary = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        return
    try:
        _write_all(fd, data)
    except BaseException:
        os.unlink(target)
        raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def describe(outputs: Sequence[Output], dest: str = "") -> str:
    """Outputs as text: a ``# path`` header, then the content (or ``-> target``)."""
    chunks = []
    for out in outputs:
        path = os.path.join(dest, out.relpath) if dest else out.relpath
        if out.link is not None:
            chunks.append(f"# {path} -> {out.link}\n")
        else:
            chunks.append(f"# {path}\n{out.text}")
    return "\n".join(chunks)


# ---------------------------------------------------------------------------------------------
# logging: /dev/kmsg under systemd, else stderr


class Logger:
    """``name[pid]: message`` lines with a ``<N>`` priority to /dev/kmsg, or plain to stderr."""

    def __init__(self, fd: int | None = None, kmsg: bool = False):
        self.fd = 2 if fd is None else fd
        self.kmsg = kmsg

    @classmethod
    def for_generator(cls) -> Logger:
        # Only when systemd runs us (it sets SYSTEMD_SCOPE for generators): a test or a user
        # running the generator by hand gets stderr.
        if os.environ.get("SYSTEMD_SCOPE"):
            try:
                fd = os.open("/dev/kmsg", os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
            except OSError:
                return cls()
            return cls(fd, kmsg=True)
        return cls()

    def __call__(self, message: Message) -> None:
        for line in message.text.splitlines() or [""]:
            if self.kmsg:
                # One write is one kernel log record; keep it under the kernel's line limit.
                data = f"<{message.priority}>{PROG}[{os.getpid()}]: {line}"[:900] + "\n"
            else:
                label = "warning: " if message.priority >= WARNING else ""
                data = f"{PROG}: {label}{line}\n"
            try:
                os.write(self.fd, data.encode("utf-8", "replace"))
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# entry point

USAGE = f"""\
usage: {PROG} NORMAL_DIR [EARLY_DIR LATE_DIR]      (as systemd runs it)
       {PROG} --dry-run [--config-dir DIR] [--subhosts-conf FILE]
           prints what would be generated; with --config-dir only that directory is read
       {PROG} --verify [CONFIG|NAME ...]
"""


def _print(stream: object) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text + "\n")  # type: ignore[attr-defined]
    return write


def main(argv: Sequence[str] | None = None, *, unit_dir: str | None = None) -> int:
    """Entry point; ``unit_dir`` is where the template unit was installed, when known."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args, template_path(unit_dir))
    except Exception as e:  # noqa: BLE001 - never a traceback from a generator
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1


def _main(args: list[str], template: str) -> int:
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE) if args else sys.stderr.write(USAGE)
        return 0 if args else EX_USAGE
    if args[0] == "--verify":  # kept for scripts; `overlay-boot --verify` is the command
        from overlay_boot.verify import verify

        return verify(args[1:], _print(sys.stdout), _print(sys.stderr))
    if args[0] == "--dry-run":
        dirs: list[Path] | None = None
        subhosts: Path | None = None
        rest = args[1:]
        while rest:
            opt = rest.pop(0)
            if opt in ("--config-dir", "--subhosts-conf") and rest:
                value = absolute(rest.pop(0))
                if opt == "--config-dir":
                    dirs = [*(dirs or []), value]
                else:
                    subhosts = value
            else:
                sys.stderr.write(f"{PROG}: unexpected argument {opt!r}\n{USAGE}")
                return EX_USAGE
        if dirs is not None and subhosts is None:
            subhosts = Path("/nonexistent/subhosts.conf")  # only the given directory
        result = generate(dirs=dirs, subhosts=subhosts, template=template)
        log = Logger()
        for m in result.messages:
            log(m)
        text = describe(result.outputs)
        if text:
            sys.stdout.write(text)
        sys.stdout.flush()
        return 1 if result.failed else 0
    if args[0].startswith("-") or len(args) not in (1, 3):
        sys.stderr.write(USAGE)
        return EX_USAGE
    dest = Path(args[0])
    result = generate(template=template)
    log = Logger.for_generator()
    for m in result.messages:
        log(m)
    failed = write(result.outputs, dest)
    try:  # for the starts' masks of other subhosts (without it, each start parses them)
        knownlist.write(str(dest), result.parsed, result.statuses)
    except OSError as e:
        log(Message(WARNING, f"{dest}: cannot write {knownlist.NAME}: {e}"))
    for m in failed:
        log(m)
    return 1 if failed else 0
