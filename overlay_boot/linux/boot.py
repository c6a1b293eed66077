"""PID 1's side of starting a subhost: namespaces, root filesystem, mount plan, pivot_root.

``spawn_subhost`` forks PID 1 of a new PID namespace straight from the caller (the supervisor)
and returns its host PID; the child builds the subhost's root and hands over to ``run_init``
without exec'ing anything (docs/ARCHITECTURE.md, "Processes of a running subhost").
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath

from overlay_boot import log
from overlay_boot.capabilities import Grant
from overlay_boot.linux import confine, journal, libc, mounts, userns

# typing and subprocess are not imported at run time: this module is loaded by every
# supervisor, and PID 1 shares its memory (see docs/ARCHITECTURE.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

_CHILD_NAMESPACES = libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC | libc.CLONE_NEWCGROUP


class StepError(Exception):
    """A start step failed; the message names the step and the path."""


def spawn_subhost(
    config: Any,
    netns_path: Path,
    status_fd: int,
    run_init: Callable[[int, journal.Relay | None], NoReturn],
    hooks_env: Mapping[str, str],
    *,
    journal_socket: Path | None = mounts.JOURNAL_DEV_LOG,
    keep_fds: Iterable[int] = (),
    hidden: Iterable[Path] = (),
    userns_fd: int | None = None,
) -> int:
    """Fork PID 1 of the subhost ``config`` and return its PID (as seen from the host).

    The caller stays in its own PID namespace: only the forked child is in the new one.
    ``status_fd`` is the write end of the status pipe (``ERROR …`` lines come from here, the
    rest from ``run_init``). ``hooks_env`` is added to the caller's environment for PREMOUNT
    and POSTMOUNT. Besides stdio, ``status_fd``, ``keep_fds`` and the log's ``LOG=`` file,
    every descriptor is closed in the child. ``hidden``: other subhosts' directories, masked
    inside (``mounts.plan_inside``). ``userns_fd`` (USERNS=): the subhost's user namespace,
    which owns the network namespace at ``netns_path`` (``netns.create_in_userns``).
    """
    keep = {0, 1, 2, status_fd, *keep_fds}
    if userns_fd is not None:
        keep.add(userns_fd)
    log_fd = log.extra_fd()  # LOG= file: PID 1 keeps writing to it
    if log_fd is not None:
        keep.add(log_fd)
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        parent = os.pidfd_open(os.getpid())
    except BaseException:
        os.close(own_pidns)
        raise
    try:
        libc.unshare(libc.CLONE_NEWPID)  # only our *children* go into the new namespace
        try:
            pid = os.fork()
            if pid == 0:
                _pid1(config, Path(netns_path), status_fd, run_init, dict(hooks_env),
                      journal_socket, keep, parent, tuple(hidden), userns_fd)
        finally:
            # In the parent only (the child never leaves _pid1): later children of the
            # supervisor (cables, hooks, overlay-go helpers) stay in the host PID namespace.
            libc.setns(own_pidns, libc.CLONE_NEWPID)
    finally:
        os.close(own_pidns)
        os.close(parent)
    return pid


# --- PID 1 ------------------------------------------------------------------------------------

def _pid1(
    config: Any,
    netns_path: Path,
    status_fd: int,
    run_init: Callable[[int, journal.Relay | None], NoReturn],
    hooks_env: dict[str, str],
    journal_socket: Path | None,
    keep: set[int],
    parent: int,
    hidden: tuple[Path, ...],
    userns_fd: int | None = None,
) -> NoReturn:
    """The forked child: set up, then become init. Never returns into the caller's stack."""
    code = 1
    try:
        try:
            # With USERNS=, the supervisor's pidfd stays open until PID 1's ids are final.
            _prepare_process(keep | ({parent} if userns_fd is not None else set()), parent)
            relay = _build_subhost(config, netns_path, hooks_env, journal_socket, hidden,
                                   userns_fd, parent)
            built = True
        except BaseException as exc:  # anything before init: report it and die
            message = _message(exc)
            if not _report(status_fd, f"ERROR {message}"):  # else the supervisor logs it
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


def _prepare_process(keep: set[int], parent: int) -> None:
    """Die with the supervisor, drop what was inherited from it."""
    # If the supervisor dies, so does PID 1, and with it the whole PID namespace.
    libc.set_pdeathsig(signal.SIGKILL)
    # It may have died before that took effect. getppid() says 0 here (the parent is outside
    # our PID namespace), so ask the pidfd opened before the fork.
    if select.select([parent], [], [], 0)[0]:
        raise StepError("the supervisor exited before PID 1 started")
    # The supervisor's signal handlers and wakeup fd mean nothing here. Until init installs
    # its own, SIGTERM aborts the start (PID 1 would ignore it with the default action).
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        if callable(signal.getsignal(sig)):
            signal.signal(sig, signal.SIG_DFL)
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


def _build_subhost(
    config: Any, netns_path: Path, hooks_env: dict[str, str], journal_socket: Path | None,
    hidden: tuple[Path, ...] = (),
    userns_fd: int | None = None,
    parent: int = -1,
) -> journal.Relay | None:
    """The start steps of docs/ARCHITECTURE.md, in order, up to the pivot_root and the
    confinement that every process of the subhost inherits from PID 1; returns the relay of
    the subhost's /dev/log to the host's journal, where there is one.

    With USERNS= (``userns_fd``) the tree is built the same way by host root, in a mount
    namespace of host root's (``linux/userns.py``); then PID 1 becomes root of the user
    namespace and makes the namespaces the subhost's root acts on (mount, UTS, IPC, cgroup).
    """
    name, live, upper = config.name, Path(config.live), Path(config.upper)
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
        _still_supervised(parent)

    # Switch to LIVE. pivot_root(".", ".") stacks the old root on top of the new one; the
    # lazy unmount then drops the whole host tree from this mount namespace, so no path from
    # inside (not /proc/1/root either) leads back to the host's root. /proc is mounted in
    # LIVE already (plan_inside), as anything reading mountinfo afterwards needs it.
    if ids is None:  # with USERNS=, _enter_userns left us there
        _step(f"chdir {live}", os.chdir, live)
    _step(f"pivot_root {live}", libc.pivot_root, ".", ".")
    _step(f"detach the host root from {live}", libc.umount2, ".", libc.MNT_DETACH)
    _step("chdir /", os.chdir, "/")
    relay = None
    if host_journal is not None:
        try:
            relay = journal.Relay(journal.bind_inside(), host_journal)
        except OSError as exc:  # e.g. a read-only /run: the subhost runs, without /dev/log
            log.warning(f"subhost {name}: no /dev/log: {journal.INSIDE_PATH}: {exc.strerror}")
            host_journal.close()
    # Before any process of the subhost exists. Processes PREMOUNT or POSTMOUNT left running
    # keep every capability, and so stay out of reach: the subhost's root has no
    # CAP_SYS_PTRACE (their /proc/PID/cwd, /fd, /root need it).
    grant = getattr(config, "capabilities", None) or Grant()
    _step("confine the subhost (capabilities, seccomp)", confine.confine, grant, name)
    return relay


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


def _step(what: str, func: Callable[..., object], *args: object) -> None:
    log.debug(what)
    try:
        func(*args)
    except OSError as exc:
        raise StepError(f"{what}: {exc.strerror or exc}") from exc


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
        raise StepError(f"{what}: {_exit_text(result.returncode)}")
    log.warning(f"{what}: {_exit_text(result.returncode)}; going on, as 1.6.4 did")


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    return f"failed with exit status {returncode}"


def _message(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, StepError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())  # one line on the status pipe


def _report(fd: int, line: str) -> bool:
    try:
        os.write(fd, line.encode("utf-8", "replace") + b"\n")
    except OSError:
        return False  # nobody listening any more
    return True
