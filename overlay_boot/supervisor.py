"""The supervisor: the long-lived host-side process of one subhost.

It runs the start sequence of docs/ARCHITECTURE.md, waits for PID 1, and tears everything down
when PID 1 exits, whatever the reason. Only the standard library lives here for the whole life
of the subhost: the cables are built by the shared cable service or a short-lived child
(pyroute2), readiness goes to systemd through the notify socket.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from . import cleanup, log, neighbours, netns, state
from .config import CommandFailed, Config, run_shell
from .errors import SubhostError
from .linux import boot, init

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGRTMIN + 4)


class _Stop(Exception):
    """A stop was requested before PID 1 existed."""


class Supervisor:
    """Starts one subhost and supervises its PID 1 until it exits."""

    def __init__(self, config: Config, *, ready: Callable[[str | None], None] | None = None):
        self.config = config
        self.ready_callback = ready
        self.pid1: int | None = None
        self.stop_requested = False
        self.record: state.Runtime | None = None
        self.registered = False  # with systemd-machined (once, not again after a reboot)

    # -- signals -------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.pid1 is not None:
            # PID 1 knows what each signal means (SIGINT reboots, the others stop).
            forward = signum if signum in (signal.SIGINT, signal.SIGRTMIN + 4) else signal.SIGTERM
            try:
                os.kill(self.pid1, forward)
            except ProcessLookupError:
                pass
        else:
            self.stop_requested = True

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise _Stop()

    # -- notify ----------------------------------------------------------------------------
    def _status(self, text: str) -> None:
        log.debug(text)
        if os.environ.get("NOTIFY_SOCKET"):
            from .systemd import notify

            notify(status=text)

    def _ready(self) -> None:
        if os.environ.get("NOTIFY_SOCKET"):
            from .systemd import notify

            notify(ready=True, status=f"Running subhost {self.config.name}")
        if self.ready_callback:
            self.ready_callback(None)

    def _failed(self, message: str) -> None:
        if self.ready_callback:
            self.ready_callback(message)

    # -- the sequence -------------------------------------------------------------------------
    def run(self) -> int:
        """Start the subhost and supervise it; returns the exit status for the process."""
        config = self.config
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        try:
            lock_fd = state.acquire(config.name)
        except SubhostError as exc:
            self._failed(str(exc))
            raise
        status = 1
        try:
            status = self._start_and_wait(config)
        except _Stop:
            log.notice(f"stop requested while starting subhost {config.name}")
            self._failed("stopped while starting")
            status = 0
        except SubhostError as exc:
            log.error(str(exc))
            self._failed(str(exc))
            status = exc.exit_status
        finally:
            self._status("Cleaning up")
            try:
                cleanup.teardown(config.name, config.interfaces)
            except Exception as exc:  # teardown must always release the lock
                log.error(f"cleanup of subhost {config.name} failed: {exc}")
                status = status or 1
            state.remove(config.name)
            state.remove_runtime_dropin(config.name)
            os.close(lock_fd)
        return status

    def _start_and_wait(self, config: Config) -> int:
        cleanup.remove_stale(config.name, config.interfaces)
        self._check_stop()

        self._status("Creating network namespace")
        netns_path = netns.create(config.name)
        if config.cables:
            self._status("Building cables")
            from . import net

            net.build_cables_in_child(config.name, config.cables, config.vlans)
        self._check_stop()

        init_script = run_init_command(config) if config.init is not None else None
        control = open_control_socket(config.name)
        settings = init.InitSettings(
            name=config.name,
            start=config.start,
            script=init_script,
            log_fd=log.extra_fd(),
            control_fd=control.fileno(),
        )
        hooks_env = {"CONFIG": str(config.path)}

        self._status("Starting PID 1")
        # Everything loaded so far is shared with PID 1 copy-on-write: keep the collector from
        # touching (and so copying) those objects in either process.
        gc.freeze()
        read_fd, write_fd = os.pipe()
        try:
            self.pid1 = boot.spawn_subhost(
                config,
                netns_path,
                write_fd,
                lambda fd: init.run(settings, fd),
                hooks_env,
                keep_fds=(control.fileno(),),
                hidden=neighbours.other_subhost_dirs(config),
            )
        finally:
            os.close(write_fd)
            control.close()  # PID 1 has it; state.remove() unlinks the path at teardown
        self.record = state.Runtime(
            name=config.name,
            config=str(config.path),
            supervisor_pid=os.getpid(),
            leader_pid=self.pid1,
            root=str(config.live),
            interfaces=config.interfaces,
        )
        state.write(self.record)
        if self.stop_requested:
            os.kill(self.pid1, signal.SIGTERM)
        error = self._follow_status(read_fd)
        status = self._wait_pid1()
        if error:
            raise SubhostError(f"subhost {config.name} failed to start: {error}")
        log.info(f"subhost {config.name} stopped (PID 1 {describe_status(status)})")
        return 0 if status == 0 else 1

    def _follow_status(self, read_fd: int) -> str | None:
        """Relay PID 1's status lines until it closes the pipe; returns an ERROR message."""
        error = None
        buffer = b""
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while True:
                try:
                    chunk = pipe.read(4096)
                except InterruptedError:
                    continue
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    kind, _, text = line.partition(" ")
                    if kind == "READY":
                        self._mark_running()
                    elif kind == "STATUS":
                        self._status(text)
                        self._set_record(state=text.partition(" ")[0])
                    elif kind == "SERVICE":
                        word, _, service = text.partition(" ")
                        self._set_record(word=word, service=service)
                    elif kind == "ERROR":
                        error = text
                        log.error(text)
        return error

    def _mark_running(self) -> None:
        self._set_record(state="running")
        log.info(f"subhost {self.config.name} is running (PID 1 is {self.pid1})")
        self._ready()
        if not self.registered and self.pid1 is not None:
            self.registered = True  # once: PID 1 stays the leader across reboots
            from . import machined

            if machined.wanted():
                machined.register_in_background(
                    self.config.name, self.pid1, str(self.config.live), self.config.interfaces)

    def _set_record(self, **changes: str) -> None:
        """Update the runtime record: the subhost's state (from READY and PID 1's STATUS
        lines: starting/stopping …) or a START word's state (SERVICE lines, for D-Bus)."""
        if self.record is None:
            return
        if changes.get("state", "running") not in ("starting", "running", "stopping"):
            return
        record = self.record
        if "word" in changes:
            services = dict(record.services)
            services[changes["word"]] = changes["service"]
            record = replace(record, services=tuple(services.items()))
        if "state" in changes:
            record = replace(record, state=changes["state"])
        if record != self.record:
            self.record = record
            state.write(record)

    def _wait_pid1(self) -> int:
        assert self.pid1 is not None
        while True:
            try:
                _, status = os.waitpid(self.pid1, 0)
                return status
            except InterruptedError:
                continue
            except ChildProcessError:
                return 0


def open_control_socket(name: str) -> socket.socket:
    """The listening control socket PID 1 inherits, at ``/run/overlay-boot/NAME.ctl`` (0600)."""
    path = state.control_path(name)
    try:
        path.unlink()  # left by a crash
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    return sock


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def run_init_command(config: Config) -> str:
    """Run the INIT command on the host; its output is the subhost's start-up script.

    The same runner as `!` values: bounded output, a timeout, killed with the supervisor.
    """
    assert config.init is not None
    try:
        out, _ = run_shell(config.init, config=config.path, cwd=str(config.base), timeout=60)
    except CommandFailed as exc:
        raise SubhostError(f"INIT: {exc}") from None
    return out.decode("utf-8", "replace")


def open_log(path: Path | None) -> None:
    """Open the LOG= file for appending; every later message is copied there.

    Never through a symlink, and only below directories only root may change (`trust`):
    root appends to it."""
    if path is None:
        return
    from .trust import open_log_file

    log.configure(extra_fd=open_log_file(path))
