"""PID 1's side of starting a subhost: namespaces, root filesystem, mount plan, pivot_root.

``spawn_subhost`` forks PID 1 of a new PID namespace straight from the caller (the supervisor)
and returns its host PID. The child builds the subhost's tree with the supervisor's modules
(shared with it, nothing to load), then execs a fresh, lean interpreter for the rest of its
life (``Pid1Exec``: ``linux/entry.py``, before ``pivot_root``, so every file it loads is the
host's); tests pass a function instead, run in the forked child after ``pivot_root``
(docs/ARCHITECTURE.md, "Processes of a running subhost").
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath

from overlay_boot import jsonlite, log, status_wire
from overlay_boot.capabilities import Grant
from overlay_boot.linux import confine, journal, libc, mounts, pivot, userns
from overlay_boot.linux.pivot import StepError
from overlay_boot.proc import exit_words, reset_signals
from overlay_boot.record import Record

# typing and subprocess are not imported at run time: this module is loaded by every
# supervisor, and PID 1 shares its memory (see docs/ARCHITECTURE.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

_CHILD_NAMESPACES = libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC | libc.CLONE_NEWCGROUP
PID1_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entry.py")
# Stop and reboot signals, blocked across the exec of PID 1's interpreter: pending, not lost
# (PID 1 of a PID namespace drops signals it has no handler for), until init handles them.
_HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGRTMIN + 4)

__all__ = ["Pid1Exec", "StepError", "spawn_pid1", "spawn_subhost"]


class Pid1Exec(Record):
    """How PID 1 goes on after the tree is built: exec ``python3 -I -S linux/entry.py`` and run
    init there (``init`` are ``linux.init.InitSettings``'s arguments, descriptors included).

    ``handover`` (under systemd): PID 1 becomes the unit's main process once the supervisor
    exits, so it gets no parent-death signal, a socket connected to ``notify_socket``,
    descriptors of ``run_dir`` and ``netns_dir`` and ``lock_fd``, the subhost's lock
    (``linux/runfiles.py``)."""

    init: dict | None = None  # {} when None
    tag: str = "overlay-boot"
    handover: bool = False
    notify_socket: str = ""
    run_dir: str = ""
    lock_fd: int | None = None
    netns_dir: str = ""
    interpreter: str = sys.executable

    def __post_init__(self) -> None:
        if self.init is None:
            object.__setattr__(self, "init", {})


def spawn_subhost(*args: Any, **kwargs: Any) -> int:
    """``spawn_pid1`` for callers that wait for PID 1 as their child: its PID only."""
    pid, pidfd = spawn_pid1(*args, **kwargs)
    os.close(pidfd)
    return pid


def spawn_pid1(
    config: Any,
    netns_path: Path,
    status_fd: int,
    run_init: Callable[[int, journal.Relay | None], NoReturn] | Pid1Exec,
    hooks_env: Mapping[str, str],
    *,
    journal_socket: Path | None = mounts.JOURNAL_DEV_LOG,
    keep_fds: Iterable[int] = (),
    hidden: Iterable[Path] = (),
    userns_fd: int | None = None,
) -> tuple[int, int]:
    """Fork PID 1 of the subhost ``config``; returns its PID (as seen from the host) and a
    pidfd of it. PID 1 is the caller's child, but with a ``Pid1Exec`` whose ``handover`` is
    set (``_spawn_orphan``).

    The caller stays in its own PID namespace: only the forked child is in the new one.
    ``status_fd`` is the write end of the status pipe (``ERROR …`` lines come from here, the
    rest from ``run_init``). ``hooks_env`` is added to the caller's environment for PREMOUNT
    and POSTMOUNT. Besides stdio, ``status_fd``, ``keep_fds`` and the log's ``LOG=`` file,
    every descriptor is closed in the child. ``hidden``: other subhosts' directories, masked
    inside (``mounts.plan_inside``). ``userns_fd`` (USERNS=): the subhost's user namespace,
    which owns the network namespace at ``netns_path`` (``netns.create_in_userns``).
    """
    keep = {0, 1, 2, status_fd, *keep_fds}
    if isinstance(run_init, Pid1Exec) and run_init.lock_fd is not None:
        keep.add(run_init.lock_fd)
    if userns_fd is not None:
        keep.add(userns_fd)
    log_fd = log.extra_fd()  # LOG= file: PID 1 keeps writing to it
    if log_fd is not None:
        keep.add(log_fd)
    def become_pid1() -> NoReturn:
        _pid1(config, Path(netns_path), status_fd, run_init, dict(hooks_env), journal_socket,
              keep, parent, tuple(hidden), userns_fd)

    parent = os.pidfd_open(os.getpid())
    try:
        if isinstance(run_init, Pid1Exec) and run_init.handover:
            return _spawn_orphan(become_pid1)
        own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.unshare(libc.CLONE_NEWPID)  # only our *children* go into the new namespace
            try:
                pid = os.fork()
                if pid == 0:
                    become_pid1()
            finally:
                # In the parent only (the child never leaves _pid1): later children of the
                # supervisor (cables, hooks, overlay-go helpers) stay in the host PID namespace.
                libc.setns(own_pidns, libc.CLONE_NEWPID)
        finally:
            os.close(own_pidns)
    finally:
        os.close(parent)
    return pid, os.pidfd_open(pid)  # our unreaped child: the PID is not reused before


def _spawn_orphan(become_pid1: Callable[[], NoReturn]) -> tuple[int, int]:
    """PID 1 as a child of a short-lived middle process, so that it is an orphan — a child of
    the service manager — before it becomes the unit's main process: systemd treats a main
    process that is not its own child as "alien", and then SIGKILLs it at once on stop instead
    of waiting for it after SIGTERM. The middle process waits until we hold PID 1 (by pidfd:
    the PID cannot be reused before) and exits; the caller cannot wait for PID 1, it polls
    the pidfd returned with its PID."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    try:
        middle = os.fork()
        if middle == 0:
            code = 1
            try:
                os.close(report_r)
                os.close(hold_w)  # else the read below never ends
                libc.unshare(libc.CLONE_NEWPID)  # our child is PID 1 of the new namespace
                pid = os.fork()
                if pid == 0:
                    become_pid1()
                os.write(report_w, b"%d\n" % pid)
                os.close(report_w)
                os.read(hold_r, 1)  # EOF once the caller has PID 1's pidfd
                code = 0
            finally:
                os._exit(code)
        os.close(report_w)
        report_w = -1
        data = b""
        while chunk := os.read(report_r, 64):
            data += chunk
        if not data:
            raise OSError("the process that was to fork PID 1 failed")
        pid = int(data)
        return pid, os.pidfd_open(pid)
    finally:
        for fd in (report_r, report_w, hold_r, hold_w):
            if fd >= 0:
                os.close(fd)
        _reap(middle)


def _reap(pid: int) -> None:
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


# --- PID 1 ------------------------------------------------------------------------------------

def _pid1(
    config: Any,
    netns_path: Path,
    status_fd: int,
    run_init: Callable[[int, journal.Relay | None], NoReturn] | Pid1Exec,
    hooks_env: dict[str, str],
    journal_socket: Path | None,
    keep: set[int],
    parent: int,
    hidden: tuple[Path, ...],
    userns_fd: int | None = None,
) -> NoReturn:
    """The forked child: set up, then become init. Never returns into the caller's stack."""
    code = 1
    supervised = not (isinstance(run_init, Pid1Exec) and run_init.handover)
    try:
        try:
            # With USERNS=, the supervisor's pidfd stays open until PID 1's ids are final.
            _prepare_process(keep | ({parent} if userns_fd is not None else set()), parent,
                             supervised)
            host_fds = _open_host_ends(run_init) if isinstance(run_init, Pid1Exec) else {}
            host_journal = _build_tree(config, netns_path, hooks_env, journal_socket, hidden,
                                       userns_fd, parent if supervised else None)
            in_live = userns_fd is not None  # _enter_userns left us there
            if isinstance(run_init, Pid1Exec):
                _exec_pid1(run_init, config, status_fd, host_journal, host_fds, in_live)
            rules = confine.Confinement.of(getattr(config, "capabilities", None) or Grant())
            relay = pivot.enter_root(config.name, str(config.live), host_journal, rules,
                                     in_live=in_live)
            built = True
        except BaseException as exc:  # anything before init: report it and die
            message = _message(exc)
            if not _report(status_fd, status_wire.error(message)):  # else the supervisor logs it
                log.error(f"subhost {getattr(config, 'name', '?')}: {message}")
            built = False
        if built:
            run_init(status_fd, relay)  # does not return
            log.error("init returned")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        log.error(f"init failed: {exc!r}")
    finally:
        log.flush()
        os._exit(code)


def _prepare_process(keep: set[int], parent: int, supervised: bool = True) -> None:
    """Die with the supervisor (SUPERVISED: not once the unit is to be handed over to PID 1),
    drop what was inherited from it."""
    if supervised:
        # If the supervisor dies, so does PID 1, and with it the whole PID namespace.
        libc.set_pdeathsig(signal.SIGKILL)
    # It may have died before that took effect. getppid() says 0 here (the parent is outside
    # our PID namespace), so ask the pidfd opened before the fork.
    if select.select([parent], [], [], 0)[0]:
        raise StepError("the supervisor exited before PID 1 started")
    # The supervisor's signal handlers and wakeup fd mean nothing here. Until init installs
    # its own, SIGTERM aborts the start (PID 1 would ignore it with the default action).
    reset_signals()
    signal.signal(signal.SIGTERM, _terminated)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    # Descriptors of the supervisor (its lock, the netns, pipes to other children, `parent`).
    low = 3
    for fd in sorted(k for k in keep if k >= 3) + [os.sysconf("SC_OPEN_MAX")]:
        os.closerange(low, fd)
        low = fd + 1
    # A session of our own: a terminal the supervisor runs in (`overlay-boot --foreground`)
    # cannot signal PID 1 behind the supervisor's back.
    os.setsid()


def _terminated(signum: int, _frame: object) -> None:
    raise StepError(f"stopped by signal {signal.Signals(signum).name} while starting")


def _open_host_ends(spec: Pid1Exec) -> dict[str, int]:
    """What PID 1 reaches on the host for its whole life, opened while the host's tree (and,
    with USERNS=, host root's permissions) are still ours: systemd's notify socket, RUN_DIR,
    /run/netns."""
    fds: dict[str, int] = {}
    if spec.handover and spec.notify_socket:
        address = spec.notify_socket
        if address.startswith("@"):
            address = "\0" + address[1:]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            raise StepError(f"connect to systemd's notify socket {spec.notify_socket}: "
                            f"{exc.strerror}") from None
        fds["notify_fd"] = sock.detach()
    if spec.handover and spec.run_dir:
        fds["run_dir_fd"] = os.open(spec.run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                    | os.O_CLOEXEC)
    if spec.handover and spec.netns_dir:
        fds["netns_dir_fd"] = os.open(spec.netns_dir, os.O_RDONLY | os.O_DIRECTORY
                                      | os.O_NOFOLLOW | os.O_CLOEXEC)
    return fds


def _exec_pid1(spec: Pid1Exec, config: Any, status_fd: int, host_journal: socket.socket | None,
               host_fds: dict[str, int], in_live: bool) -> NoReturn:
    """Exec PID 1's own interpreter (``linux/entry.py``), with what it needs as JSON in a memfd
    (``entry.read_plan``) and the descriptors it names inherited. Never returns."""
    grant = getattr(config, "capabilities", None) or Grant()
    init = dict(spec.init, **host_fds)
    if spec.lock_fd is not None:
        init["lock_fd"] = spec.lock_fd
    plan = {
        "tag": spec.tag,
        "name": config.name,
        "live": str(config.live),
        "in_live": in_live,
        "status_fd": status_fd,
        "journal_fd": None if host_journal is None else host_journal.detach(),
        "confinement": confine.Confinement.of(grant).as_json(),
        "log_fd": log.extra_fd(),
        "init": init,
    }
    memfd = os.memfd_create("overlay-boot-pid1", os.MFD_CLOEXEC)
    data = jsonlite.dumps(plan).encode()
    while data:
        data = data[os.write(memfd, data):]
    os.lseek(memfd, 0, os.SEEK_SET)
    passed = [memfd, status_fd, plan["journal_fd"], plan["log_fd"], *init.values()]
    for fd in passed:
        if isinstance(fd, int) and not isinstance(fd, bool) and fd >= 0:
            os.set_inheritable(fd, True)
    signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    argv = [spec.interpreter, "-I", "-S", PID1_SCRIPT, str(memfd)]
    try:
        os.execv(spec.interpreter, argv)
    except OSError as exc:
        raise StepError(f"exec {' '.join(argv)}: {exc.strerror}") from None


def _build_tree(
    config: Any, netns_path: Path, hooks_env: dict[str, str], journal_socket: Path | None,
    hidden: tuple[Path, ...] = (),
    userns_fd: int | None = None,
    parent: int | None = -1,
) -> socket.socket | None:
    """The start steps of docs/ARCHITECTURE.md, in order, up to the ``pivot_root``
    (``linux/pivot.py``); returns a socket connected to the host's journal, where there is
    one, for the relay of the subhost's /dev/log.

    With USERNS= (``userns_fd``) the tree is built the same way by host root, in a mount
    namespace of host root's (``linux/userns.py``); then PID 1 becomes root of the user
    namespace and makes the namespaces the subhost's root acts on (mount, UTS, IPC, cgroup).
    ``parent``: the supervisor's pidfd, to die with it again after that (None: not).
    """
    name, upper = config.name, Path(config.upper)
    live = Path(config.live)
    ids = config.userns if userns_fd is not None else None

    # Namespaces: the new PID namespace exists already (we are its PID 1); the network
    # namespace was made (and its cables) by the supervisor.
    if ids is None:
        _step(f"unshare mount/UTS/IPC/cgroup namespaces of {name}", libc.unshare,
              _CHILD_NAMESPACES)
    else:
        _step(f"unshare a mount namespace to build {name} in", libc.unshare, libc.CLONE_NEWNS)
    _step(f"enter network namespace {netns_path}", _enter_netns, netns_path)
    if ids is None:
        _step(f"set hostname {name}", libc.sethostname, name)
    # Nothing mounted from here on may propagate back to the host.
    _step("make / recursively slave", libc.mount, None, "/", None, libc.MS_SLAVE | libc.MS_REC)

    if config.premount:
        _run_hook("PREMOUNT", config.premount, [str(upper)], config, hooks_env, fatal=True)

    # Written into UPPER before the overlay is mounted: overlayfs does not promise to notice
    # changes made to its layers underneath a mounted overlay (and 1.6.4 did it here, too).
    _step(f"write {upper}/etc/network/interfaces", mounts.write_default_interfaces,
          upper, name, config.cables)

    with userns.MappedCreator(ids):  # nothing without USERNS=
        for op in mounts.plan_root(config, userns_fd):
            _step(op.describe(), op.execute, Path("/"))
        inside = mounts.plan_inside(config, journal_socket, [PurePosixPath(p) for p in hidden],
                                    userns_fd)
        for op in inside:
            _step(f"{op.describe()} in {live}", op.execute, live)

    if config.postmount:
        _run_hook("POSTMOUNT", config.postmount, [str(live), str(upper)], config, hooks_env,
                  fatal=False)

    host_journal = None
    if journal_socket is not None and journal_socket.exists():
        host_journal = journal.connect_host(str(journal_socket))  # reachable only until pivot

    if ids is not None and userns_fd is not None:
        _enter_userns(name, live, ids, userns_fd)
        if parent is not None:
            _still_supervised(parent)
    return host_journal


def _enter_userns(name: str, live: Path, ids: Any, userns_fd: int) -> None:
    """Become root of the subhost's user namespace; make its own mount, UTS, IPC and cgroup
    namespaces. Every mount of the tree built so far is locked in the new mount namespace
    (MNT_LOCKED: the masks stay, read-only stays read-only); LIVE itself too, and pivot_root
    refuses a locked new root: a recursive bind of LIVE onto itself is one of our own.

    LIVE is reached through the working directory only: root of the user namespace may not
    pass through BASE (0700, host root's). Returns with the working directory at the root of
    that bind."""
    _step(f"chdir {live}", os.chdir, live)  # unshare moves it into the new mount namespace
    _step(f"enter the user namespace of {name} (host ids {ids.base}..{ids.end - 1})",
          userns.become_root, userns_fd)
    os.close(userns_fd)
    _step(f"unshare mount/UTS/IPC/cgroup namespaces of {name} in its user namespace",
          libc.unshare, _CHILD_NAMESPACES)
    _step(f"set hostname {name}", libc.sethostname, name)
    _step(f"rbind {live} onto itself (a mount of the user namespace to pivot into)",
          _bind_cwd_onto_itself)


def _still_supervised(parent: int) -> None:
    """Die with the supervisor again: any change of PID 1's ids (fsuid, the user namespace's
    root) cleared its parent-death signal. ``parent``: the supervisor's pidfd (closed here)."""
    try:
        libc.set_pdeathsig(signal.SIGKILL)
        if select.select([parent], [], [], 0)[0]:
            raise StepError("the supervisor exited before PID 1 started")
    finally:
        os.close(parent)


def _bind_cwd_onto_itself() -> None:
    tree = libc.open_tree(".", libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC | libc.AT_RECURSIVE)
    try:
        libc.move_mount(tree, ".")
        os.fchdir(tree)  # the root of the mount just attached
    finally:
        os.close(tree)


_step = pivot.step


def _enter_netns(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(fd, libc.CLONE_NEWNET)
    finally:
        os.close(fd)


def _run_hook(
    which: str, command: str, args: list[str], config: Any, hooks_env: dict[str, str],
    *, fatal: bool,
) -> None:
    """Run a PREMOUNT/POSTMOUNT command with its arguments (env CONFIG, ACTION=overlay-boot).

    A non-zero exit is a warning and the start goes on, as in 1.6.4, which never looked at it
    (a hook whose last line is a false test, ``[ -e x ] && y``, must not stop the subhost);
    with FATAL (PREMOUNT) it stops the start: PREMOUNT is there to prepare UPPER (1.6.4's own
    use mounts a disk image on it), and a subhost started on the bare mount point would write
    its files where the image, mounted at the next start, hides them.

    ``/bin/sh -c 'COMMAND "$@"'``: the command is shell text as in 1.6.4's config, the
    arguments are passed untouched. It runs as a child of PID 1 (in the subhost's PID
    namespace): it is waited for here; anything it leaves running is reaped by init later.
    """
    env = {**os.environ, **hooks_env, "CONFIG": str(config.path), "ACTION": "overlay-boot"}
    argv = ["/bin/sh", "-c", f'{command} "$@"', which.lower(), *args]
    what = f"{which} {command!r} {' '.join(args)}"
    log.debug(f"run {what} (cwd {config.base})")
    try:
        import subprocess

        result = subprocess.run(argv, env=env, cwd=config.base, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise StepError(f"{what}: {exc.strerror or exc}") from exc
    if result.returncode == 0:
        return
    if fatal:
        raise StepError(f"{what}: {exit_words(result.returncode)}")
    log.warning(f"{what}: {exit_words(result.returncode)}; going on, as 1.6.4 did")


def _message(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, StepError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())  # one line on the status pipe


def _report(fd: int, line: str) -> bool:
    try:
        os.write(fd, status_wire.encode(line))
    except OSError:
        return False  # nobody listening any more
    return True
