"""overlay-boot-bus: the D-Bus control plane of every running subhost, one shared service.

`python3 -m overlay_boot.bus.service`, D-Bus-activated on the system bus as
``org.overlayboot.OverlayBoot1`` (overlay-boot-bus.service), so the ~12 MB of asyncio and
dbus-next are paid once for all subhosts and only while someone uses the bus: after
`IDLE_EXIT` seconds without a call the service releases its name and exits.

What runs is learnt from the runtime records (``/run/overlay-boot/NAME.json`` whose lock a
supervisor holds), looked at again before each incoming call, so the objects are always current
without a watcher: a record is re-read only when its file changed (``RunningRecords``).
Properties and introspection are served by dbus-next; the methods are dispatched here, because
each call first asks the bus daemon for the caller's UID (only root may call them; the policy
file says the same) and because file descriptors passed in and out must be closed once the
message is written. Talking to a subhost's PID 1 (Run, OpenShell) takes threads of a pool of
its own; a Run waits for its command's exit on the loop, holding no thread.

Objects (docs: README, "D-Bus interface"):

* ``/org/overlayboot/OverlayBoot1`` — ``org.overlayboot.OverlayBoot1.Manager``:
  ``ListSubhosts() -> a(sso)``, ``GetSubhost(s) -> o``.
* ``/org/overlayboot/OverlayBoot1/subhost/<escaped NAME>`` —
  ``org.overlayboot.OverlayBoot1.Subhost``: Name, State, Leader, RootDirectory, ConfigPath,
  Interfaces, Services, StartTime; Stop(), Share(ss), Unshare(s), OpenShell(asa{ss}) -> hu,
  Run(asa{ss}hhh) -> i, Diff(b) -> a(sssbt).
"""

# No `from __future__ import annotations`: dbus-next reads the D-Bus signatures from the
# annotations, which are string constants ('s', 'a(ss)'), not types.
# ruff: noqa: F722, F821, UP037

import asyncio
import errno
import functools
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dbus_next import BusType, Message, MessageType
from dbus_next.aio import MessageBus
from dbus_next.constants import NameFlag, RequestNameReply
from dbus_next.errors import DBusError
from dbus_next.service import PropertyAccess, ServiceInterface, dbus_property, method

from .. import log, state
from ..naming import unit_name
from .names import (
    BUS_NAME,
    ERROR_ACCESS_DENIED,
    ERROR_FAILED,
    ERROR_NO_SUCH_SUBHOST,
    MANAGER_IFACE,
    MANAGER_PATH,
    SUBHOST_IFACE,
    subhost_end,
    subhost_path,
)

IDLE_EXIT = float(os.environ.get("OVERLAY_BOOT_BUS_IDLE", "60"))  # seconds without a call
CONTROL_WORKERS = 16  # threads for talking to PID 1s (Run, OpenShell): their own pool
SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
SYSTEMD_MANAGER = "org.freedesktop.systemd1.Manager"
ACTIVE_STATES = ("active", "activating", "reloading")


class Failed(DBusError):
    def __init__(self, text: str) -> None:
        super().__init__(ERROR_FAILED, text)


def _not_implemented() -> None:
    raise DBusError(ERROR_FAILED, "dispatched by the service, not by dbus-next")


class Manager(ServiceInterface):
    """The manager object. Method bodies here only declare the signatures for introspection;
    `Service.dispatch` runs the calls."""

    def __init__(self) -> None:
        super().__init__(MANAGER_IFACE)

    @method()
    def ListSubhosts(self) -> 'a(sso)':
        _not_implemented()

    @method()
    def GetSubhost(self, name: 's') -> 'o':
        _not_implemented()


class Subhost(ServiceInterface):
    """One running subhost, its properties read from its runtime record."""

    def __init__(self, record: state.Runtime) -> None:
        super().__init__(SUBHOST_IFACE)
        self.record = record

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> 's':
        return self.record.name

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> 's':
        return self.record.state

    @dbus_property(access=PropertyAccess.READ)
    def Leader(self) -> 'u':
        return self.record.leader_pid

    @dbus_property(access=PropertyAccess.READ)
    def RootDirectory(self) -> 's':
        return self.record.root

    @dbus_property(access=PropertyAccess.READ)
    def ConfigPath(self) -> 's':
        return self.record.config

    @dbus_property(access=PropertyAccess.READ)
    def Interfaces(self) -> 'a(ss)':
        return [[subhost_end(self.record.name, host), host] for host in self.record.interfaces]

    @dbus_property(access=PropertyAccess.READ)
    def Services(self) -> 'a(ss)':
        return [[word, service] for word, service in self.record.services]

    @dbus_property(access=PropertyAccess.READ)
    def StartTime(self) -> 't':
        return int(self.record.started * 1_000_000)

    @method()
    def Stop(self):
        _not_implemented()

    @method()
    def Share(self, host_directory: 's', subhost_directory: 's'):
        _not_implemented()

    @method()
    def Unshare(self, subhost_directory: 's'):
        _not_implemented()

    @method()
    def OpenShell(self, argv: 'as', environment: 'a{ss}') -> 'hu':
        _not_implemented()

    @method()
    def Run(self, argv: 'as', environment: 'a{ss}', stdin: 'h', stdout: 'h',
            stderr: 'h') -> 'i':
        _not_implemented()

    @method()
    def Diff(self, shadowed_only: 'b') -> 'a(sssbt)':
        _not_implemented()


Reply = tuple[str, list[Any], list[int]]  # signature, body, fds to pass (closed once sent)
Handler = Callable[..., Awaitable[Reply]]


class Service:
    """The bus connection, the exported objects and the method dispatch."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.manager = Manager()
        self.subhosts: dict[str, Subhost] = {}
        self.records = RunningRecords()
        # Asking a PID 1 to start something blocks (up to control.ANSWER_TIMEOUT): in threads
        # of their own, never the loop's default executor.
        self.control_pool = ThreadPoolExecutor(CONTROL_WORKERS, thread_name_prefix="control")
        self.loop = asyncio.get_running_loop()
        self.last_call = self.loop.time()
        self.busy = 0
        self.done = asyncio.Event()
        bus.export(MANAGER_PATH, self.manager)
        bus.add_message_handler(self.on_message)
        self.methods: dict[tuple[str, str], tuple[str, Handler]] = {
            (MANAGER_IFACE, "ListSubhosts"): ("", self.list_subhosts),
            (MANAGER_IFACE, "GetSubhost"): ("s", self.get_subhost),
            (SUBHOST_IFACE, "Stop"): ("", self.stop),
            (SUBHOST_IFACE, "Share"): ("ss", self.share),
            (SUBHOST_IFACE, "Unshare"): ("s", self.unshare),
            (SUBHOST_IFACE, "OpenShell"): ("asa{ss}", self.open_shell),
            (SUBHOST_IFACE, "Run"): ("asa{ss}hhh", self.run),
            (SUBHOST_IFACE, "Diff"): ("b", self.diff),
        }

    # -- what runs -----------------------------------------------------------------------

    def rescan(self) -> None:
        """Export one object per running subhost, drop the objects of those gone."""
        records = {record.name: record for record in self.records.current()}
        for name in list(self.subhosts):
            if name not in records:
                self.bus.unexport(subhost_path(name), self.subhosts.pop(name))
        for name, record in records.items():
            if name in self.subhosts:
                self.subhosts[name].record = record
            else:
                obj = Subhost(record)
                self.bus.export(subhost_path(name), obj)
                self.subhosts[name] = obj

    def subhost_at(self, path: str) -> Subhost | None:
        for obj in self.subhosts.values():
            if subhost_path(obj.record.name) == path:
                return obj
        return None

    # -- dispatch ---------------------------------------------------------------------------

    def on_message(self, msg: Message) -> Message | bool:
        """Runs before dbus-next's own handling of every message."""
        if msg.message_type != MessageType.METHOD_CALL:
            return False
        self.last_call = self.loop.time()
        self.rescan()
        key = (msg.interface, msg.member)
        if key not in self.methods:
            if msg.interface is None:  # the interface is optional in a call
                key = next((k for k in self.methods if k[1] == msg.member), key)
            if key not in self.methods:
                _close_fds(msg)
                return False  # Introspect, Properties, Peer: dbus-next's
        signature, handler = self.methods[key]
        if key[0] == MANAGER_IFACE:
            target = None
            if msg.path != MANAGER_PATH:
                _close_fds(msg)
                return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownObject",
                                         f"no manager object at {msg.path}")
        else:
            target = self.subhost_at(msg.path)
            if target is None:
                _close_fds(msg)
                return Message.new_error(msg, ERROR_NO_SUCH_SUBHOST,
                                         f"no running subhost at {msg.path}")
        if msg.signature != signature:
            _close_fds(msg)
            return Message.new_error(
                msg, "org.freedesktop.DBus.Error.InvalidArgs",
                f"{msg.member} takes the signature {signature!r}, not {msg.signature!r}")
        self.busy += 1
        task = self.loop.create_task(self.call(msg, handler, target))
        task.add_done_callback(lambda _t: None)
        return True

    async def call(self, msg: Message, handler: Handler, target: Subhost | None) -> None:
        reply_fds: list[int] = []
        try:
            try:
                uid = await self.caller_uid(msg.sender)
                if uid != 0:
                    raise DBusError(ERROR_ACCESS_DENIED,
                                    f"only root may call {msg.member} (caller uid {uid})")
                args = [msg.unix_fds[a] if t == "h" else a
                        for t, a in zip(_arg_types(msg.signature), msg.body, strict=True)]
                signature, body, reply_fds = await handler(target, *args)
                reply = Message.new_method_return(msg, signature, body, reply_fds)
            except DBusError as exc:
                reply = exc._as_message(msg)
            except Exception as exc:  # noqa: BLE001 - every call gets an answer
                log.error(f"{msg.member} failed: {type(exc).__name__}: {exc}")
                reply = Message.new_error(msg, ERROR_FAILED, f"{type(exc).__name__}: {exc}")
            if not msg.flags & 0x1:  # NO_REPLY_EXPECTED
                await self.bus.send(reply)
        finally:
            _close_fds(msg)
            for fd in reply_fds:
                _close(fd)
            self.busy -= 1
            self.last_call = self.loop.time()

    async def caller_uid(self, sender: str | None) -> int:
        reply = await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="GetConnectionUnixUser",
            signature="s", body=[sender or ""]))
        if reply.message_type == MessageType.ERROR or not reply.body:
            raise DBusError(ERROR_ACCESS_DENIED, "cannot tell who the caller is")
        return int(reply.body[0])

    # -- the manager's methods ----------------------------------------------------------------

    async def list_subhosts(self, _target: None) -> Reply:
        body = [[name, obj.record.state, subhost_path(name)]
                for name, obj in sorted(self.subhosts.items())]
        return "a(sso)", [body], []

    async def get_subhost(self, _target: None, name: str) -> Reply:
        if name not in self.subhosts:
            raise DBusError(ERROR_NO_SUCH_SUBHOST, f"subhost {name} is not running")
        return "o", [subhost_path(name)], []

    # -- a subhost's methods ---------------------------------------------------------------------

    async def stop(self, target: Subhost) -> Reply:
        """Through systemd when the subhost is its unit; else SIGTERM to its supervisor.
        Returns once the stop is under way; the object goes when the subhost is gone."""
        record = target.record
        unit = unit_name(record.name)
        if os.path.isdir("/run/systemd/system") and await self.unit_active(unit):
            reply = await self.bus.call(Message(
                destination=SYSTEMD, path=SYSTEMD_PATH, interface=SYSTEMD_MANAGER,
                member="StopUnit", signature="ss", body=[unit, "replace"]))
            if reply.message_type == MessageType.ERROR:
                raise Failed(f"cannot stop {unit}: {reply.body[0] if reply.body else ''}")
            log.info(f"stopping subhost {record.name} ({unit})")
            return "", [], []
        # Only the process the record names (PID and start time), never a reused PID.
        locked = state.is_locked(record.name)
        if not locked or not state.signal_supervisor(record, signal.SIGTERM):
            raise DBusError(ERROR_NO_SUCH_SUBHOST, f"subhost {record.name} is not running")
        log.info(f"stopping subhost {record.name} (SIGTERM to {record.supervisor_pid})")
        return "", [], []

    async def unit_active(self, unit: str) -> bool:
        reply = await self.bus.call(Message(
            destination=SYSTEMD, path=SYSTEMD_PATH, interface=SYSTEMD_MANAGER,
            member="GetUnit", signature="s", body=[unit]))
        if reply.message_type == MessageType.ERROR:
            return False  # NoSuchUnit: not loaded, so not running as a unit
        reply = await self.bus.call(Message(
            destination=SYSTEMD, path=reply.body[0],
            interface="org.freedesktop.DBus.Properties", member="Get", signature="ss",
            body=["org.freedesktop.systemd1.Unit", "ActiveState"]))
        if reply.message_type == MessageType.ERROR:
            return False
        return reply.body[0].value in ACTIVE_STATES

    async def share(self, target: Subhost, host_directory: str,
                    subhost_directory: str) -> Reply:
        """overlay-share HOSTDIR NAME [SUBHOSTDIR], in-process (``linux/share.py``)."""
        from ..linux import share

        hostdir = os.path.normpath(_absolute(host_directory, "host_directory"))
        directory = hostdir
        if subhost_directory:
            directory = os.path.normpath(_absolute(subhost_directory, "subhost_directory"))
        await self.in_worker(functools.partial(share.share, target.record.name, hostdir,
                                               directory))
        return "", [], []

    async def unshare(self, target: Subhost, subhost_directory: str) -> Reply:
        """overlay-share --remove NAME SUBHOSTDIR: whichever share is there."""
        from ..linux import share

        directory = os.path.normpath(_absolute(subhost_directory, "subhost_directory"))
        await self.in_worker(functools.partial(share.unshare, target.record.name, directory))
        return "", [], []

    async def in_worker(self, call: Callable[[], None]) -> None:
        """A blocking ``linux/share.py`` call in a worker thread; its SubhostError is the
        caller's Failed. (It enters the subhost's mount namespace in a thread of its own that
        comes back and ends: neither the loop's thread nor a pooled worker ever leaves ours.)
        linux/share.py is imported at the first call: most instances of this service never
        share."""
        from ..errors import SubhostError

        try:
            await self.loop.run_in_executor(self.control_pool, call)
        except SubhostError as exc:
            raise Failed(str(exc)) from None

    async def open_shell(self, target: Subhost, argv: list[str],
                         environment: dict[str, str]) -> Reply:
        """A login shell (argv empty) or argv on a new pty inside, a child of the subhost's
        PID 1. Answers the pty master and the process's PID (as seen on the host)."""
        from .. import control
        from ..errors import SubhostError

        def start() -> tuple[int, int]:
            master, conn = control.open_tty(target.record.name, argv, rows=24, cols=80,
                                            env=environment, login=not argv)
            conn.close()  # the process lives on; its exit is the caller's business
            try:
                return master, session_of(master)
            except OSError as exc:
                if exc.errno == errno.ENOTTY:  # it ended already: its terminal has no session
                    return master, 0
                _close(master)
                raise

        try:
            master, pid = await self.loop.run_in_executor(self.control_pool, start)
        except SubhostError as exc:
            raise Failed(str(exc)) from None
        return "hu", [0, pid], [master]

    async def run(self, target: Subhost, argv: list[str], environment: dict[str, str],
                  stdin: int, stdout: int, stderr: int) -> Reply:
        """argv inside, a child of PID 1, with the caller's descriptors as its stdio (as they
        are: terminals too); answers its exit status (128 + signal when killed) once it ends.

        Only the start takes a thread; the wait for the exit is on the loop, so any number of
        long commands hold no thread that other calls need."""
        from .. import control
        from ..errors import SubhostError

        if not argv:
            raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", "Run needs a command")
        start = functools.partial(control.start, target.record.name, argv, env=environment,
                                  stdin=stdin, stdout=stdout, stderr=stderr)
        try:
            conn, _ = await self.loop.run_in_executor(self.control_pool, start)
            with conn:
                status = await _exit_status(self.loop, conn)
        except SubhostError as exc:
            raise Failed(str(exc)) from None
        return "i", [status], []

    async def diff(self, target: Subhost, shadowed_only: bool) -> Reply:
        """What the subhost's UPPER changes (overlay-diff): (path, kind, type, shadowed,
        size) per entry, read in a worker thread."""
        from .. import drift
        from ..config import load_config
        from ..errors import ConfigError, SubhostError, printable

        def entries() -> list[list[Any]]:
            layers = drift.layers_of(load_config(target.record.config, evaluate=False))
            # D-Bus strings are UTF-8: a file name that is not comes escaped, as printed
            return [[printable(e.path), e.kind, e.type, e.shadowed, e.size]
                    for e in drift.walk(layers, shadowed_only=shadowed_only)]

        try:
            body = await asyncio.to_thread(entries)
        except (ConfigError, SubhostError, OSError) as exc:
            raise Failed(str(exc)) from None
        return "a(sssbt)", [body], []

    # -- life ---------------------------------------------------------------------------------

    async def idle_watch(self) -> None:
        while True:
            idle = self.loop.time() - self.last_call
            if self.busy == 0 and idle >= IDLE_EXIT:
                self.done.set()
                return
            await asyncio.sleep(max(1.0, IDLE_EXIT - idle) if self.busy == 0 else 1.0)


class RunningRecords:
    """The records of the running subhosts, each re-read only when its file changed.

    ``state.write`` replaces a record by a rename, so a file with the same inode, size and
    mtime has the same content: a call costs a directory listing, one stat and one lock check
    per record (a supervisor may die without a file changing), and a read and parse only of the
    records that changed.
    """

    def __init__(self) -> None:
        self.cache: dict[str, tuple[tuple[int, int, int], state.Runtime | None]] = {}

    def current(self) -> list[state.Runtime]:
        """Like ``state.running()``: the records whose supervisor holds the lock, by name."""
        files = _record_files()
        for name in set(self.cache) - set(files):
            del self.cache[name]
        found = []
        for name, key in sorted(files.items()):
            if not state.is_locked(name):
                continue
            cached = self.cache.get(name)
            if cached is None or cached[0] != key:
                cached = (key, state.read(name))
                self.cache[name] = cached
            if cached[1] is not None:
                found.append(cached[1])
        return found


def _record_files() -> dict[str, tuple[int, int, int]]:
    """NAME -> (inode, mtime, size) of every record file NAME.json."""
    found = {}
    try:
        with os.scandir(state.RUN_DIR) as entries:
            for entry in entries:
                if entry.name.endswith(".json"):
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    found[entry.name[:-5]] = (info.st_ino, info.st_mtime_ns, info.st_size)
    except FileNotFoundError:
        pass
    return found


async def _exit_status(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> int:
    """Wait on the loop for PID 1's exit message on CONN."""
    from .. import control

    conn.setblocking(False)
    while True:
        try:
            data = await loop.sock_recv(conn, 4096)
        except OSError as exc:
            raise control.ControlError(
                f"lost the connection to the subhost: {exc.strerror or exc}") from None
        code = control.exit_code(data)
        if code is not None:
            return code


def _absolute(path: str, argument: str) -> str:
    """PATH when it is absolute (so no option either); InvalidArgs otherwise."""
    if not path.startswith("/"):
        raise DBusError("org.freedesktop.DBus.Error.InvalidArgs",
                        f"{argument} must be an absolute path: {path!r}")
    return path


def session_of(master: int) -> int:
    """The session (leader's PID, in our PID namespace) of the terminal whose master is
    MASTER: the process PID 1 started on it, which made the session and the terminal its
    own before PID 1 answered."""
    import fcntl
    import struct
    import termios

    tiocgsid = getattr(termios, "TIOCGSID", 0x5429)  # Linux's value; Python lacks the name
    return struct.unpack("i", fcntl.ioctl(master, tiocgsid, b"\0" * 4))[0]


def _arg_types(signature: str) -> list[str]:
    from dbus_next.signature import SignatureTree

    return [t.signature for t in SignatureTree._get(signature).types]


def _close_fds(msg: Message) -> None:
    for fd in msg.unix_fds:
        _close(fd)
    msg.unix_fds = []


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


async def serve() -> int:
    bus = MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True)
    try:
        await bus.connect()
    except (OSError, Exception) as exc:  # noqa: BLE001 - no bus: nothing to serve
        log.error(f"cannot connect to the system bus: {exc}")
        return 1
    service = Service(bus)
    reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        log.error(f"cannot own {BUS_NAME}: {reply.name}")
        bus.disconnect()
        return 1
    log.debug(f"serving {BUS_NAME}")
    watch = asyncio.create_task(service.idle_watch())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.create_task(service.done.wait()), asyncio.create_task(stop.wait()),
             asyncio.create_task(bus.wait_for_disconnect())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    watch.cancel()
    if bus.connected:
        # Give the name back first: a call from now on activates a new instance. Bounded:
        # at shutdown the bus daemon may be going away at the same time.
        try:
            await asyncio.wait_for(bus.release_name(BUS_NAME), 2)
            deadline = loop.time() + 5
            while service.busy and loop.time() < deadline and not stop.is_set():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)  # answer what was queued before the release
        except (TimeoutError, Exception) as exc:  # noqa: BLE001 - leaving anyway
            log.debug(f"leaving the bus: {exc!r}")
        bus.disconnect()
    for task in waits:
        task.cancel()
    return 0


def main() -> int:
    """Serve until idle or told to stop. Leaves with os._exit: a call still waiting in a
    worker thread for a PID 1's answer must not hold the exit up (asyncio.run and the
    interpreter would join the thread)."""
    log.configure(tag="overlay-boot-bus")
    status = 1
    try:
        loop = asyncio.new_event_loop()
        status = loop.run_until_complete(serve())
    finally:
        log.flush()
        sys.stdout.flush()
        os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
