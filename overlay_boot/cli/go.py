"""overlay-go: a shell or a command inside a running subhost.

    overlay-go                  list the running subhosts
    overlay-go --json           list configured and running subhosts as JSON (for scripts)
    overlay-go NAME             an interactive login shell inside NAME (on a terminal of its own)
    overlay-go NAME -- CMD …    run CMD inside NAME; its exit status is returned

The shell or command is started by the subhost's PID 1, as its child, through the control
socket /run/overlay-boot/NAME.ctl: it is in all the subhost's namespaces and its cgroup. Only
when a running subhost has no control socket (started by an older version) are PID 1's
namespaces entered directly.
"""

from __future__ import annotations

import os
import signal
import sys

from ..errors import SubhostError
from .common import UsageError, require_root, run_main

# Order matters: the mount namespace last but one (it changes what /proc paths mean only for
# lookups made after it; the fds are all opened first), the PID namespace applies to children.
NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "mnt")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSED_ENV = ("TERM", "COLORTERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES")
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return run_main(lambda: _main(args), "overlay-go")


def _main(args: list[str]) -> int:
    if not args:
        return list_running()
    if args == ["--json"]:
        return list_running(as_json=True)
    if args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    name, command = args[0], args[1:]
    if name.startswith("-"):
        raise UsageError(f"unknown option {name}; usage: overlay-go [--json | NAME [-- CMD ARGS…]]")
    if command and command[0] == "--":
        command = command[1:]
        if not command:
            raise UsageError("no command after --")
    elif command:
        raise UsageError("usage: overlay-go NAME [-- CMD ARGS…]")
    require_root()
    from .. import control

    env = {key: os.environ[key] for key in PASSED_ENV if os.environ.get(key)}
    try:
        if command:
            return run_command(name, command, env)
        if os.isatty(0):
            return shell(name, env)
        return run_command(name, [], env, login=True)
    except control.NotRunning:
        leader = _running_leader(name)
        if leader is None:
            raise
        from .. import log

        log.warning(f"subhost {name} has no control socket (started by an older version?): "
                    "entering its namespaces directly")
        return enter(leader, command)


def run_command(name: str, argv: list[str], env: dict[str, str], login: bool = False) -> int:
    """ARGV (or root's login shell) inside NAME with our stdin/stdout/stderr; its status.

    Our SIGINT/SIGTERM/SIGHUP/SIGQUIT are passed on to its process group.
    """
    from .. import control

    conn, _ = control.start(name, argv, env=env, login=login)
    with conn:
        previous = {
            sig: signal.signal(sig, lambda signum, _frame: control.send_signal(conn, signum))
            for sig in FORWARDED_SIGNALS
        }
        try:
            return control.wait_exit(conn)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def shell(name: str, env: dict[str, str]) -> int:
    """An interactive login shell inside NAME on a new pty, relayed to our terminal."""
    from .. import control, terminal

    rows, cols = terminal.window_size(0)
    master, conn = control.open_tty(name, [], rows=rows, cols=cols, env=env, login=True)
    with conn:
        return terminal.interactive(master, conn)


def _running_leader(name: str) -> int | None:
    """PID 1 (host PID) of NAME if its supervisor runs, else None."""
    from .. import state

    record = state.read(name)
    if record is None or not state.is_locked(name):
        return None
    return record.leader_pid


def list_running(as_json: bool = False) -> int:
    from .. import state

    records = state.running()
    if as_json:
        print(json_listing(records))
        return 0
    if not records:
        print("no subhost is running")
        return 0
    print(f"{'NAME':<13} {'STATE':<9} {'LEADER':>7}  {'INTERFACES':<20} ADDRESSES")
    for record in records:
        addresses = " ".join(addresses_of(record.leader_pid)) or "-"
        print(
            f"{record.name:<13} {record.state:<9} {record.leader_pid:>7}  "
            f"{' '.join(record.interfaces) or '-':<20} {addresses}"
        )
    return 0


def json_listing(records: list) -> str:
    """The running subhosts (RECORDS) and the configured ones that are not running, as JSON.

    One object per subhost, sorted by name: ``name``, ``state`` (``starting``, ``running``,
    ``stopping``, or ``stopped`` for a configured subhost that is not running), ``leader``
    (host PID of its PID 1, or null), ``interfaces``, ``addresses``, ``config`` (its path; for
    a running subhost the one it was started from) and ``unit``. Configs are only listed,
    never parsed (no ``!`` command runs).
    """
    import json

    entries: dict[str, dict[str, object]] = {}
    for record in records:
        entries[record.name] = {
            "name": record.name, "state": record.state, "leader": record.leader_pid,
            "interfaces": list(record.interfaces), "addresses": addresses_of(record.leader_pid),
            "config": record.config or None, "unit": _unit_of(record.name),
        }
    for name, path in _configured():
        entries.setdefault(name, {
            "name": name, "state": "stopped", "leader": None, "interfaces": [],
            "addresses": [], "config": path, "unit": _unit_of(name),
        })
    return json.dumps([entries[name] for name in sorted(entries)], indent=1)


def _configured() -> list[tuple[str, str]]:
    """(NAME, config path) of every config the generator would consider; unreadable lists and
    unsafe names are left out (``overlay-boot --verify`` reports them)."""
    from .. import discovery, naming

    found = discovery.discover(problems=[])
    named = [(discovery.declared_name(f.path), str(f.path)) for f in found]
    return [(name, path) for name, path in named if naming.is_safe_instance(name)]


def _unit_of(name: str) -> str:
    from ..naming import unit_name

    return unit_name(name)


def addresses_of(pid: int) -> list[str]:
    """The non-loopback IPv4 and global IPv6 addresses in PID's network namespace.

    Read from /proc/PID/net (cheap: no netlink, no namespace switch).
    """
    found: list[str] = []
    try:
        with open(f"/proc/{pid}/net/fib_trie") as fib_trie:
            lines = fib_trie.read().splitlines()
    except OSError:
        lines = []
    for previous, line in zip(lines, lines[1:], strict=False):
        if line.strip() == "/32 host LOCAL":
            address = previous.strip().lstrip("|-+ ")
            if not address.startswith("127.") and address not in found:
                found.append(address)
    try:
        with open(f"/proc/{pid}/net/if_inet6") as if_inet6:
            for line in if_inet6:
                fields = line.split()
                if len(fields) >= 6 and fields[3] == "00":  # global scope
                    import socket

                    found.append(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[0])))
    except OSError:
        pass
    return found


def enter(leader: int, command: list[str]) -> int:
    """Fallback: COMMAND (or a login shell) in all namespaces of LEADER, entered directly."""
    from .. import control
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
                    with open(cgroup, "w") as procs:
                        procs.write(f"{os.getpid()}\n")
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
            os._exit(control.shell_status(status))
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
    return control.shell_status(status)


def _cgroup_procs_file(leader: int) -> str | None:
    """The cgroup.procs of the leader's unified-hierarchy cgroup, to join it."""
    try:
        with open(f"/proc/{leader}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            relative = line[3:].lstrip("/")
            for mount in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
                procs = os.path.join(mount, relative, "cgroup.procs")
                if os.path.exists(os.path.join(mount, "cgroup.controllers")) and \
                        os.path.exists(procs):
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
