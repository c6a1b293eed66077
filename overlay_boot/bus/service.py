"""overlay-boot-bus: the D-Bus control plane of every running subhost, one shared service.

`python3 -m overlay_boot.bus.service`, D-Bus-activated on the system bus as
``org.overlayboot.OverlayBoot1`` (overlay-boot-bus.service), so the ~12 MB of asyncio and
dbus-next are paid once for all subhosts and only while someone uses the bus or a subhost
runs: after `IDLE_EXIT` seconds without a call, with no subhost running and no follower of the
signals connected, the service releases its name and exits.

What runs is learnt from the runtime records (``/run/overlay-boot/NAME.json`` whose lock a
supervisor holds), looked at again whenever the runtime directory changes (inotify,
``watch.py``), when systemd reports the end of a job of an ``overlay-boot@`` unit or its
removal, and before each incoming call; a record is re-read only when its file changed
(``RunningRecords``). Each look that finds a difference is sent as signals (overlay-boot(8),
"D-BUS SIGNALS"): ``InterfacesAdded``/``InterfacesRemoved`` of the
``org.freedesktop.DBus.ObjectManager`` on the manager's path when a subhost's object comes or
goes, ``PropertiesChanged`` on the subhost's object for the properties that changed. So that a
subscriber is never left deaf, each ``overlay-boot@`` unit pulls the service in before it
starts, and the service stays while a subhost runs or a client that called GetManagedObjects
(the followers) is connected.

Properties, introspection and GetManagedObjects are served by dbus-next; the methods are
dispatched here, from a table made of the declared interfaces (so a signature is written once),
because each call first asks the bus daemon for the caller's UID (only root may call them; the
policy file says the same) and because file descriptors passed in and out must be closed once
the message is written. Talking to a subhost's PID 1 (Run, OpenShell) takes threads of a pool
of its own; a Run waits for its command's exit on the loop, holding no thread.

Objects (docs: README, "D-Bus interface"):

* ``/org/overlayboot/OverlayBoot1`` — ``org.overlayboot.OverlayBoot1.Manager``:
  ``ListSubhosts() -> a(sso)``, ``GetSubhost(s) -> o``; ``org.freedesktop.DBus.ObjectManager``.
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
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dbus_next import BusType, Message, MessageType, Variant
from dbus_next.aio import MessageBus
from dbus_next.constants import NameFlag, RequestNameReply
from dbus_next.errors import DBusError
from dbus_next.service import PropertyAccess, ServiceInterface, dbus_property, method

from .. import log, state, systemd
from ..errors import SubhostError
from ..naming import subhost_end, unit_name
from .names import (
    BUS_NAME,
    ERROR_ACCESS_DENIED,
    ERROR_FAILED,
    ERROR_NO_SUCH_SUBHOST,
    MANAGER_IFACE,
    MANAGER_PATH,
    OBJECT_MANAGER_IFACE,
    SUBHOST_IFACE,
    subhost_path,
)
from .watch import DirectoryWatch

IDLE_EXIT = float(os.environ.get("OVERLAY_BOOT_BUS_IDLE", "60"))  # seconds idle, none running
MAX_FOLLOWERS = 256  # clients kept track of (the bus daemon allows 512 match rules each)
MAX_REFUSED = 1024  # records remembered as not served (logged once each)
CONTROL_WORKERS = 16  # threads for talking to PID 1s (Run, OpenShell): their own pool
SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
SYSTEMD_MANAGER = "org.freedesktop.systemd1.Manager"
# systemd's signals that may mean a subhost came or went: they only trigger a rescan. Not the
# units' PropertiesChanged: a match rule cannot name our units only (it took every unit's, a
# few kB each), and unmarshalling them was ~95 % of this service's CPU while subhosts start
# (issue #13); what they said of ours, the runtime directory's inotify watch says too.
UNIT_PREFIX = "overlay-boot@"
DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
SYSTEMD_MATCHES = (
    f"type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',interface='{SYSTEMD_MANAGER}',"
    "member='JobRemoved'",
    f"type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',interface='{SYSTEMD_MANAGER}',"
    "member='UnitRemoved'",
)


class Failed(DBusError):
    def __init__(self, text: str) -> None:
        super().__init__(ERROR_FAILED, text)


def _not_implemented() -> None:
    raise DBusError(ERROR_FAILED, "dispatched by the service, not by dbus-next")


class Manager(ServiceInterface):
    """The manager object. Method bodies here only declare the signatures (introspection,
    `dispatch_table`); `Service.on_message` dispatches the calls."""

    def __init__(self) -> None:
        super().__init__(MANAGER_IFACE)

    @method()
    def ListSubhosts(self) -> 'a(sso)':
        _not_implemented()

    @method()
    def GetSubhost(self, name: 's') -> 'o':
        _not_implemented()


class Subhost(ServiceInterface):
    """One running subhost, its properties read from its runtime record. ``Subhost(None)``
    is the declaration alone (the dispatch table is made from it)."""

    def __init__(self, record: state.Runtime | None) -> None:
        super().__init__(SUBHOST_IFACE)
        self.record = record

    def snapshot(self) -> dict[str, Variant]:
        """Every property's value, checked against its declared signature (ValueError when
        the record does not fit: it is written partly from what PID 1 reports)."""
        values = {}
        for prop in self.introspect().properties:
            try:
                value = getattr(self, prop.name)
                _check_text(value)
                values[prop.name] = Variant(prop.signature, value)
            except Exception as exc:  # noqa: BLE001 - any mismatch: a record not to serve
                raise ValueError(f"{prop.name}: {type(exc).__name__}: {exc}") from None
        return values

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


@dataclass(frozen=True)
class Call:
    """How a declared method is dispatched: its handler and its declared signatures."""

    handler: Handler
    arg_types: tuple[str, ...]  # one complete type per argument
    out_signature: str

    @property
    def in_signature(self) -> str:
        return "".join(self.arg_types)


def dispatch_table(interface: ServiceInterface,
                   handlers: Mapping[str, Handler]) -> dict[tuple[str, str], Call]:
    """(interface, member) -> Call for each method INTERFACE declares, with the signatures
    of its declaration; HANDLERS must name exactly the declared methods."""
    declared = interface.introspect().methods
    if {m.name for m in declared} != set(handlers):
        raise ValueError(f"{interface.name}: handlers {sorted(handlers)} are not the declared "
                         f"methods {sorted(m.name for m in declared)}")
    return {(interface.name, m.name): Call(handlers[m.name],
                                           tuple(arg.signature for arg in m.in_args),
                                           "".join(arg.signature for arg in m.out_args))
            for m in declared}


class SignalBus(MessageBus):
    """dbus-next's MessageBus, but for its own InterfacesAdded/InterfacesRemoved.

    dbus-next (0.2.3, its last release: Debian's and PyPI's) sends them at each export and
    unexport from the exported object's own path; the D-Bus specification has them sent by
    the object manager, from its path, which is what ``busctl``, GDBus's object manager
    client and sd-bus expect. The service sends them itself (`Service.object_signal`), so
    these two hooks of dbus-next's are silenced. (dbus-next declares
    ``org.freedesktop.DBus.ObjectManager`` on every exported path and answers its
    GetManagedObjects: every object below the path, with its properties.)
    """

    def _emit_interface_added(self, path: str, interface: ServiceInterface) -> None:
        pass

    def _emit_interface_removed(self, path: str, removed_interfaces: list[str]) -> None:
        pass


class Service:
    """The bus connection, the exported objects, the method dispatch and the signals."""

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
        self.rescan_pending = False
        self.refused: set[tuple[str, tuple[int, int, int]]] = set()  # records not served
        self.watch: DirectoryWatch | None = None
        self.followers: set[str] = set()  # clients that called GetManagedObjects, connected
        self.tasks: set[asyncio.Future[None]] = set()
        bus.export(MANAGER_PATH, self.manager)
        bus.add_message_handler(self.on_message)
        self.methods = {
            **dispatch_table(self.manager, {
                "ListSubhosts": self.list_subhosts, "GetSubhost": self.get_subhost}),
            **dispatch_table(Subhost(None), {
                "Stop": self.stop, "Share": self.share, "Unshare": self.unshare,
                "OpenShell": self.open_shell, "Run": self.run, "Diff": self.diff}),
        }

    # -- what runs -----------------------------------------------------------------------

    def rescan(self) -> None:
        """Export one object per running subhost, drop the objects of those gone, and tell
        the bus: InterfacesAdded, PropertiesChanged (what changed), InterfacesRemoved."""
        self.rescan_pending = False
        records = {record.name: record for record in self.records.current()}
        for name in list(self.subhosts):
            if name not in records:
                path = subhost_path(name)
                self.bus.unexport(path, self.subhosts.pop(name))
                self.object_signal("InterfacesRemoved", "oas", [path, [SUBHOST_IFACE]])
                self.last_call = self.loop.time()  # the idle time counts from the last one
        for name, record in records.items():
            obj = self.subhosts.get(name)
            if obj is None:
                obj = Subhost(record)
                values = self.checked(obj)
                if values is None:
                    continue
                path = subhost_path(name)
                self.bus.export(path, obj)
                self.subhosts[name] = obj
                self.object_signal("InterfacesAdded", "oa{sa{sv}}",
                                   [path, {SUBHOST_IFACE: values}])
            elif obj.record != record:
                before, served = obj.snapshot(), obj.record
                obj.record = record
                after = self.checked(obj)
                if after is None:  # keep serving what was last fit to serve
                    obj.record = served
                    continue
                changed = {key: value.value for key, value in after.items()
                           if before.get(key) != value}
                if changed:
                    obj.emit_properties_changed(changed)

    def object_signal(self, member: str, signature: str, body: list[Any]) -> None:
        """InterfacesAdded or InterfacesRemoved, from the object manager (the manager)."""
        self.bus.send(Message.new_signal(MANAGER_PATH, OBJECT_MANAGER_IFACE, member,
                                         signature, body))

    def checked(self, obj: Subhost) -> dict[str, Variant] | None:
        """OBJ's properties, or None (logged once per file) when its record doesn't fit."""
        try:
            return obj.snapshot()
        except ValueError as exc:
            assert obj.record is not None
            key = (obj.record.name, self.records.key_of(obj.record.name))
            if key not in self.refused:
                if len(self.refused) >= MAX_REFUSED:
                    self.refused.clear()
                self.refused.add(key)
                log.warning(f"runtime record of {obj.record.name!r} not served: {exc}")
            return None

    def rescan_soon(self) -> None:
        """One rescan for any number of wake-ups that come together (none once the bus
        connection is closed: the service is leaving)."""
        if not self.rescan_pending and self.bus.connected:
            self.rescan_pending = True
            self.loop.call_soon(self.rescan)

    def subhost_at(self, path: str) -> Subhost | None:
        for name, obj in self.subhosts.items():
            if subhost_path(name) == path:
                return obj
        return None

    # -- the sources of change ---------------------------------------------------------------

    def watch_records(self) -> None:
        """inotify on the runtime directory, made (as a supervisor would) if it is missing."""
        self.watch = DirectoryWatch(state.RUN_DIR)
        self.rewatch()
        self.loop.add_reader(self.watch.fileno(), self.on_records_changed)

    def rewatch(self) -> None:
        assert self.watch is not None
        if not self.watch.watch():
            state.ensure_run_dir()
            self.watch.watch()

    def on_records_changed(self) -> None:
        assert self.watch is not None
        if self.watch.changed():
            if not self.watch.watching:  # the directory was removed: made again, watched
                try:
                    self.rewatch()
                except (OSError, SubhostError) as exc:
                    log.warning(f"runtime records no longer watched: {exc}")
                    self.loop.remove_reader(self.watch.fileno())
            self.rescan_soon()

    async def follow_systemd(self) -> None:
        """Subscribe to systemd's unit signals (`on_signal` picks the overlay-boot@ ones)."""
        if not systemd.booted():
            return
        replies = [await self.bus_daemon("AddMatch", rule) for rule in SYSTEMD_MATCHES]
        replies.append(await self.bus.call(Message(destination=SYSTEMD, path=SYSTEMD_PATH,
                                                   interface=SYSTEMD_MANAGER,
                                                   member="Subscribe")))
        for reply in replies:
            if reply.message_type == MessageType.ERROR:
                log.warning("systemd's signals not followed: "
                            f"{reply.body[0] if reply.body else reply.error_name}")
                return

    async def keep_for(self, client: str) -> None:
        """Stay while CLIENT, which called GetManagedObjects (what a follower of the signals
        does first), is connected: on a host without systemd nothing else would start the
        service when a subhost starts."""
        if client in self.followers or len(self.followers) >= MAX_FOLLOWERS:
            return
        self.followers.add(client)
        await self.bus_daemon("AddMatch", _gone_rule(client))
        reply = await self.bus_daemon("NameHasOwner", client)  # gone before the rule was in?
        if reply.message_type == MessageType.ERROR or not reply.body[0]:
            await self.follower_gone(client)

    async def follower_gone(self, client: str) -> None:
        if client in self.followers:
            self.followers.discard(client)
            self.last_call = self.loop.time()
            await self.bus_daemon("RemoveMatch", _gone_rule(client))

    def bus_daemon(self, member: str, name: str) -> Awaitable[Message]:
        return self.bus.call(Message(destination=DBUS, path=DBUS_PATH, interface=DBUS,
                                     member=member, signature="s", body=[name]))

    def on_signal(self, msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and msg.sender == DBUS:
            if msg.body[0] in self.followers and not msg.body[2]:
                self.background(self.follower_gone(msg.body[0]))
        elif msg.member in ("JobRemoved", "UnitRemoved") and msg.interface == SYSTEMD_MANAGER:
            unit = msg.body[2] if msg.member == "JobRemoved" else msg.body[0]
            if isinstance(unit, str) and unit.startswith(UNIT_PREFIX):
                self.rescan_soon()

    # -- dispatch ---------------------------------------------------------------------------

    def on_message(self, msg: Message) -> Message | bool:
        """Runs before dbus-next's own handling of every message."""
        if msg.message_type == MessageType.SIGNAL:
            self.on_signal(msg)
            return False
        if msg.message_type != MessageType.METHOD_CALL:
            return False
        self.last_call = self.loop.time()
        self.rescan()
        if (msg.interface, msg.member) == (OBJECT_MANAGER_IFACE, "GetManagedObjects") \
                and msg.sender:
            self.background(self.keep_for(msg.sender))
        key = (msg.interface, msg.member)
        if key not in self.methods:
            if msg.interface is None:  # the interface is optional in a call
                key = next((k for k in self.methods if k[1] == msg.member), key)
            if key not in self.methods:
                _close_fds(msg)
                return False  # Introspect, Properties, Peer, ObjectManager: dbus-next's
        call = self.methods[key]
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
        if msg.signature != call.in_signature:
            _close_fds(msg)
            return Message.new_error(
                msg, "org.freedesktop.DBus.Error.InvalidArgs",
                f"{msg.member} takes the signature {call.in_signature!r}, "
                f"not {msg.signature!r}")
        self.busy += 1
        self.background(self.call(msg, call, target))
        return True

    def background(self, work: Awaitable[None]) -> None:
        """Run WORK on the loop, holding a reference until it is done (asyncio keeps only
        a weak one)."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.finished)

    def finished(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug(f"in the background: {task.exception()!r}")  # the bus went away

    async def call(self, msg: Message, call: Call, target: Subhost | None) -> None:
        reply_fds: list[int] = []
        try:
            try:
                uid = await self.caller_uid(msg.sender)
                if uid != 0:
                    raise DBusError(ERROR_ACCESS_DENIED,
                                    f"only root may call {msg.member} (caller uid {uid})")
                args = [msg.unix_fds[a] if t == "h" else a
                        for t, a in zip(call.arg_types, msg.body, strict=True)]
                signature, body, reply_fds = await call.handler(target, *args)
                if signature != call.out_signature:  # a handler that drifted from its declaration
                    raise RuntimeError(f"{msg.member} answered {signature!r}, declared "
                                       f"{call.out_signature!r}")
                reply = Message.new_method_return(msg, call.out_signature, body, reply_fds)
            except DBusError as exc:
                reply = Message.new_error(msg, exc.type, exc.text)
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
        reply = await self.bus_daemon("GetConnectionUnixUser", sender or "")
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
        if systemd.booted() and await self.unit_active(unit):
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
        return reply.body[0].value in systemd.ACTIVE_STATES

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
            layers = drift.layers_of(load_config(target.record.config))
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
        """Leave after IDLE_EXIT seconds without calls, none in progress, no subhost
        running and no follower connected: whoever follows the signals is not left deaf."""
        while True:
            idle = self.loop.time() - self.last_call
            waiting = self.busy == 0 and not self.subhosts and not self.followers
            if waiting and idle >= IDLE_EXIT:
                self.done.set()
                return
            await asyncio.sleep(max(1.0, IDLE_EXIT - idle) if waiting else 1.0)


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
        """Like ``state.running()``: the records whose supervisor holds the lock, by name.
        A record that names another subhost than its file is no record."""
        files = _record_files()
        for name in set(self.cache) - set(files):
            del self.cache[name]
        if not files:
            return []

        def read_if_changed(name: str, dir_fd: int) -> state.Runtime | None:
            cached = self.cache.get(name)
            if cached is None or cached[0] != files[name]:
                record = state.read(name, dir_fd=dir_fd)
                cached = (files[name], record if record is not None and record.name == name
                          else None)
                self.cache[name] = cached
            return cached[1]

        return state.running(sorted(files), read_record=read_if_changed)

    def key_of(self, name: str) -> tuple[int, int, int]:
        """What identifies the content of NAME's record as last read."""
        cached = self.cache.get(name)
        return cached[0] if cached else (0, 0, 0)


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


def _gone_rule(client: str) -> str:
    """The match rule for the bus daemon's word that CLIENT (a unique name) disconnected."""
    return (f"type='signal',sender='{DBUS}',path='{DBUS_PATH}',interface='{DBUS}',"
            f"member='NameOwnerChanged',arg0='{client}',arg2=''")


def _check_text(value: Any) -> None:
    """Raise UnicodeEncodeError if VALUE holds a string D-Bus can't carry (a lone surrogate,
    which JSON can spell): dbus-next would fail only when writing the message."""
    if isinstance(value, str):
        value.encode()
    elif isinstance(value, list | tuple):
        for item in value:
            _check_text(item)


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
    bus = SignalBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True)
    try:
        await bus.connect()
    except (OSError, Exception) as exc:  # noqa: BLE001 - no bus: nothing to serve
        log.error(f"cannot connect to the system bus: {exc}")
        return 1
    service = Service(bus)
    # Watching first, then the first scan: nothing that changes in between is missed.
    try:
        service.watch_records()
    except (OSError, SubhostError) as exc:
        log.warning(f"runtime records not watched (only looked at on calls): {exc}")
    await service.follow_systemd()
    reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        log.error(f"cannot own {BUS_NAME}: {reply.name}")
        bus.disconnect()
        return 1
    # The subhosts running already appear (InterfacesAdded) once the name is ours: a
    # subscriber matching on the name sees them.
    service.rescan()
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
