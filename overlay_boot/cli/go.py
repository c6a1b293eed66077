"""overlay-go: a shell or a command inside a running subhost.

    overlay-go                  list the running subhosts
    overlay-go --json           list configured and running subhosts as JSON (for scripts)
    overlay-go NAME             an interactive login shell inside NAME (on a terminal of its own)
    overlay-go NAME -- CMD …    run CMD inside NAME; its exit status is returned

The shell or command is started by the subhost's PID 1, as its child, through the control
socket /run/overlay-boot/NAME.ctl: it is in all the subhost's namespaces and its cgroup. A
subhost without a control socket cannot be entered (nothing enters its namespaces from outside).

Our terminal never crosses into the subhost: a process there holding it could inject input into
the admin's shell (TIOCSTI) or read what is typed after overlay-go ends. When stdin, stdout and
stderr are all terminals (and we are not a background job), CMD runs on a new terminal inside
and we relay ours to it; otherwise each terminal among them is replaced by a pipe we relay;
pipes and files are passed as they are.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from ..errors import SubhostError
from .common import UsageError, exit_now, require_root, run_main

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

PASSED_ENV = ("TERM", "COLORTERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES")
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
STDIO = (0, 1, 2)


def main(argv: list[str] | None = None) -> int:
    """overlay-go with ARGV; as the command (no ARGV) it never returns: see exit_now."""
    if argv is not None:
        return run_main(lambda: _main(argv), "overlay-go")
    exit_now(run_main(lambda: _main(sys.argv[1:]), "overlay-go"))


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
        if _supervised(name):
            raise SubhostError(
                f"subhost {name} runs but has no control socket ({control.socket_path(name)}): "
                "it cannot be entered; restart it with this version of overlay-boot"
            ) from None
        raise


def run_command(name: str, argv: list[str], env: dict[str, str], login: bool = False) -> int:
    """ARGV (or root's login shell) inside NAME with our stdio; its exit status.

    Our SIGINT/SIGTERM/SIGHUP/SIGQUIT are passed on to its process group. Terminals among our
    stdio are never handed over (see the module's docstring).
    """
    from .. import control

    terminals = tuple(fd for fd in STDIO if os.isatty(fd))
    if not terminals:
        conn, _ = control.start(name, argv, env=env, login=login)
        with conn:
            return forwarding_signals(conn, lambda: control.wait_exit(conn))
    from .. import terminal

    # A background job (&) can't put the terminal in raw mode without being stopped: pipes.
    if terminals == STDIO and not terminal.job_control_stops_us(0):
        return on_new_terminal(name, argv, env, login)
    return with_relayed_terminals(name, argv, env, login, terminals)


def on_new_terminal(name: str, argv: list[str], env: dict[str, str], login: bool) -> int:
    """ARGV on a new pty inside NAME, relayed to our terminal; signals to us are passed on."""
    from .. import control, terminal

    rows, cols = terminal.window_size(0)
    master, conn = control.open_tty(name, argv, rows=rows, cols=cols, env=env, login=login)
    with conn:
        return terminal.interactive(master, conn,
                                    forward=lambda signum: control.send_signal(conn, signum))


def with_relayed_terminals(name: str, argv: list[str], env: dict[str, str], login: bool,
                           terminals: tuple[int, ...]) -> int:
    """ARGV inside NAME with a pipe in place of each of our TERMINALS (relayed by us) and the
    rest of our stdio as it is."""
    from .. import control, terminal

    pipes = terminal.StdioPipes.around(terminals)
    try:
        stdin, stdout, stderr = pipes.theirs()
        conn, _ = control.start(name, argv, env=env, login=login,
                                stdin=stdin, stdout=stdout, stderr=stderr)
    except BaseException:
        pipes.close()
        raise
    pipes.close_theirs()
    with conn:
        return forwarding_signals(conn, lambda: terminal.relay_pipes(pipes, conn))


def forwarding_signals(conn: socket.socket, wait: Callable[[], int]) -> int:
    """WAIT() for the command started on CONN, passing our FORWARDED_SIGNALS on to it."""
    from .. import control

    previous = {
        sig: signal.signal(sig, lambda signum, _frame: control.send_signal(conn, signum))
        for sig in FORWARDED_SIGNALS
    }
    try:
        return wait()
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


def _supervised(name: str) -> bool:
    """Does a supervisor of NAME hold its lock (it runs, but maybe without a control socket)?"""
    from .. import state

    return state.read(name) is not None and state.is_locked(name)


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
    return [(name, path) for name, path in named if naming.is_valid_name(name)]


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


if __name__ == "__main__":
    sys.exit(main())
