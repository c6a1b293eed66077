"""overlay-go: a shell or a command inside a running subhost.

    overlay-go                  list the running subhosts
    overlay-go NAME             an interactive login shell inside NAME
    overlay-go NAME -- CMD …    run CMD inside NAME; its exit status is returned

This version enters the namespaces of the subhost's PID 1 directly (setns) and joins its
cgroup, then execs the shell or command as root of the subhost.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import state
from ..errors import SubhostError
from .common import UsageError, require_root, run_main

# Order matters: the mount namespace last but one (it changes what /proc paths mean only for
# lookups made after it; the fds are all opened first), the PID namespace applies to children.
NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "mnt")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return run_main(lambda: _main(args), "overlay-go")


def _main(args: list[str]) -> int:
    if not args:
        return list_running()
    if args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    name, command = args[0], args[1:]
    if command and command[0] == "--":
        command = command[1:]
    elif command:
        raise UsageError("usage: overlay-go NAME [-- CMD ARGS…]")
    require_root()
    record = state.read(name)
    if record is None or not state.is_locked(name):
        raise SubhostError(f"subhost {name} is not running")
    return enter(record.leader_pid, command)


def list_running() -> int:
    records = state.running()
    if not records:
        print("no subhost is running")
        return 0
    print(f"{'NAME':<13} {'STATE':<9} {'LEADER':>7}  INTERFACES")
    for record in records:
        print(
            f"{record.name:<13} {record.state:<9} {record.leader_pid:>7}  "
            f"{' '.join(record.interfaces) or '-'}"
        )
    return 0


def enter(leader: int, command: list[str]) -> int:
    """Run COMMAND (or a login shell) in all namespaces of LEADER; return its exit status."""
    from ..linux import libc

    try:
        fds = {ns: os.open(f"/proc/{leader}/ns/{ns}", os.O_RDONLY) for ns in NAMESPACES}
    except FileNotFoundError:
        raise SubhostError(f"PID 1 of the subhost ({leader}) is gone") from None
    cgroup = _cgroup_procs_file(leader)
    pid = os.fork()
    if pid == 0:
        try:
            if cgroup is not None:
                try:
                    cgroup.write_text(f"{os.getpid()}\n")
                except OSError:
                    pass  # best effort: the namespaces are what matter
            for ns in NAMESPACES:
                libc.setns(fds[ns], 0)
            os.chdir("/")
            # setns(CLONE_NEWPID) applies to children: fork once more to be inside.
            inner = os.fork()
            if inner == 0:
                _exec_inside(command)
            _, status = os.waitpid(inner, 0)
            os._exit(shell_status(status))
        except BaseException as exc:  # noqa: BLE001 - report anything, never return into main()
            sys.stderr.write(f"overlay-go: {exc}\n")
            os._exit(127)
    for fd in fds.values():
        os.close(fd)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return shell_status(status)


def shell_status(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _cgroup_procs_file(leader: int) -> Path | None:
    """The cgroup.procs of the leader's unified-hierarchy cgroup, to join it."""
    try:
        lines = Path(f"/proc/{leader}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            relative = line[3:].lstrip("/")
            for mount in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
                procs = Path(mount, relative, "cgroup.procs")
                if Path(mount, "cgroup.controllers").exists() and procs.exists():
                    return procs
    return None


def _exec_inside(command: list[str]) -> None:
    env = {
        "PATH": SAFE_PATH,
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "TERM": os.environ.get("TERM", "dumb"),
    }
    for keep in ("LANG", "LC_ALL", "COLORTERM"):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    try:
        os.chdir(env["HOME"])
    except OSError:
        os.chdir("/")
    if command:
        os.execvpe(command[0], command, env)
    shell = _root_shell()
    env["SHELL"] = shell
    os.execve(shell, ["-" + os.path.basename(shell)], env)


def _root_shell() -> str:
    """root's login shell as the subhost's own /etc/passwd says, else /bin/sh."""
    try:
        with open("/etc/passwd") as passwd:
            for line in passwd:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 7 and fields[2] == "0" and os.access(fields[6], os.X_OK):
                    return fields[6]
    except OSError:
        pass
    return "/bin/sh"


if __name__ == "__main__":
    sys.exit(main())
