"""Named network namespaces (``/run/netns/NAME``) and the host ends of cables, stdlib only.

The supervisor lives as long as its subhost, so this module must stay light: namespaces are
made with ``unshare``/``mount`` (``linux.libc``), ``lo`` is brought up with an ioctl and links are
deleted with one raw rtnetlink message. Everything pyroute2 is needed for lives in ``net.py``.

What is ours is marked, and only that is ever removed: a netns we made has its identity
(device and inode of the namespace) in ``RUN_DIR/NAME.netns``; a host cable end we made carries
the interface alias ``overlay-boot:NAME`` (``link_tag``). ``ip netns add NAME`` or a link
someone else named ``NAME0`` are left alone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

from . import log, proc, state
from .errors import SubhostError
from .linux import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import IdRange

NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def setns(fd: int) -> None:
    """Enter the network namespace FD (this thread only)."""
    libc.setns(fd, libc.CLONE_NEWNET)


def path(name: str) -> Path:
    return NETNS_DIR / name


def exists(name: str) -> bool:
    """Whether ``/run/netns/NAME`` is there (mounted or a leftover file)."""
    return os.path.lexists(path(name))


def marker_path(name: str) -> Path:
    """Where the identity of the netns we made for NAME is kept (root's RUN_DIR)."""
    return state.RUN_DIR / f"{name}.netns"


def _marker_tmp(marker: Path) -> Path:
    """Where the mark is written before it is renamed into place (left by a `kill -9` then)."""
    return marker.with_suffix(".netns-tmp")


def _identity(target: Path) -> str:
    info = os.stat(target)
    return f"{info.st_dev}:{info.st_ino}"


def ours(name: str) -> bool:
    """Whether ``/run/netns/NAME`` is the namespace overlay-boot made for NAME: the one its
    mark names, or (a start interrupted before the mount) the empty file made for it."""
    try:
        with open(marker_path(name), "rb") as f:
            marked = f.read(100).decode("ascii", "replace").strip()
        info = os.stat(path(name), follow_symlinks=False)
        if f"{info.st_dev}:{info.st_ino}" == marked:
            return True
        return _placeholder(info)
    except OSError:
        return False


def _placeholder(info: os.stat_result) -> bool:
    """An empty file of /run/netns itself, nothing mounted on it."""
    return (stat.S_ISREG(info.st_mode) and info.st_size == 0
            and info.st_dev == os.stat(NETNS_DIR).st_dev)


def foreign(name: str) -> bool:
    """Whether ``/run/netns/NAME`` exists and is not ours (``ip netns add NAME``…)."""
    return exists(name) and not ours(name)


def link_tag(name: str) -> str:
    """The interface alias (IFLA_IFALIAS) of the host cable ends of subhost NAME."""
    return f"overlay-boot:{name}"


def tagged(ifname: str, name: str) -> bool:
    """Whether host interface IFNAME is a cable end overlay-boot made for subhost NAME."""
    try:
        alias = (SYS_NET / ifname / "ifalias").read_text().rstrip("\n")
    except OSError:
        return False
    return alias == link_tag(name)


def create(name: str) -> Path:
    """Create ``/run/netns/NAME`` exactly as ``ip netns add NAME`` does, with ``lo`` up.

    Raises SubhostError if it already exists or the kernel refuses.
    """
    target, marker = _reserve(name)
    try:
        _new_netns(target, marker, what=f"creating network namespace {name}")
    except BaseException:
        remove(name)
        raise
    return target


def create_in_userns(name: str, ids: IdRange) -> tuple[Path, int]:
    """``create`` for a subhost with USERNS=: the network namespace belongs to a new user
    namespace mapping IDS (its root configures the interfaces, binds low ports, mounts
    sysfs). Returns the path and a descriptor of the user namespace (the caller closes it).

    A user namespace is made by a process: a forked helper unshares it, we write its maps
    (host root may map any range), it unshares the network namespace, we bind that.
    """
    target, marker = _reserve(name)
    try:
        return target, _userns_helper(name, ids, target, marker)
    except BaseException:
        remove(name)
        raise


def _userns_helper(name: str, ids: IdRange, target: Path, marker: Path) -> int:
    what = f"creating user and network namespaces of {name}"
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 1
        try:
            os.close(to_child_w)
            os.close(from_child_r)
            proc.reset_signals()
            libc.set_pdeathsig(signal.SIGKILL)
            libc.unshare(libc.CLONE_NEWUSER)
            os.write(from_child_w, b"u")
            if os.read(to_child_r, 1) == b"n":  # the maps are written
                libc.unshare(libc.CLONE_NEWNET)
                set_up("lo")
                os.write(from_child_w, b"n")
                os.read(to_child_r, 1)  # until the parent bound it (EOF)
                status = 0
        except BaseException as exc:
            try:
                os.write(from_child_w, b"E" + (str(exc) or type(exc).__name__).encode()[:4000])
            except BaseException:
                pass
        finally:
            os._exit(status)
    os.close(to_child_r)
    os.close(from_child_w)
    userns_fd = -1
    try:
        _expect(from_child_r, b"u", what)
        from overlay_boot.linux import userns

        userns.write_maps(pid, ids)
        userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        os.write(to_child_w, b"n")
        _expect(from_child_r, b"n", what)
        own = Path(f"/proc/{pid}/ns/net")
        _write_mark(marker, _identity(own))  # before it is mounted
        libc.mount(own, target, flags=libc.MS_BIND)
    except BaseException as exc:
        if userns_fd >= 0:
            os.close(userns_fd)
        if isinstance(exc, OSError):
            raise SubhostError(f"{what}: {exc}") from exc
        raise
    finally:
        os.close(to_child_w)  # EOF: the helper exits
        os.close(from_child_r)
        os.waitpid(pid, 0)
    return userns_fd


def _expect(fd: int, word: bytes, what: str) -> None:
    got = os.read(fd, 4096)
    if got != word:
        reason = got[1:].decode("utf-8", "replace") if got.startswith(b"E") else "helper died"
        raise SubhostError(f"{what}: {reason}")


def _reserve(name: str) -> tuple[Path, Path]:
    """The empty file ``/run/netns/NAME`` and our mark "pending" for it (SubhostError if it
    exists already)."""
    target = path(name)
    marker = marker_path(name)
    try:
        NETNS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        with _locked(NETNS_DIR):
            _make_shared(NETNS_DIR)
        if os.path.lexists(target):
            raise FileExistsError
        # Marked before it exists: a start killed at any point leaves nothing unmarked.
        state.ensure_run_dir()
        _write_mark(marker, "pending")
        fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
        os.close(fd)
    except FileExistsError:
        raise SubhostError(f"network namespace {name} exists already ({target})") from None
    except OSError as exc:
        forget(name)
        raise SubhostError(f"cannot create network namespace {name}: {exc}") from exc
    return target, marker


def _write_mark(marker: Path, text: str) -> None:
    tmp = _marker_tmp(marker)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, marker)


def remove(name: str) -> None:
    """Like ``ip netns delete NAME``: lazy unmount and unlink, and our mark of it. No error if
    it is not there. Callers that did not just make it check ``ours`` first."""
    target = path(name)
    try:
        libc.umount2(target, libc.MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise SubhostError(f"cannot remove network namespace {name}: {exc}") from exc
    _unlink(target)
    forget(name)


def forget(name: str) -> None:
    """Drop our mark of NAME's netns (it is gone, or it is not the one we made), and a mark
    a killed start was writing."""
    marker = marker_path(name)
    _unlink(marker)
    _unlink(_marker_tmp(marker))


def host_links(names: Iterable[str]) -> list[str]:
    """Those of NAMES that are interfaces of this process's network namespace."""
    return [n for n in names if n and "/" not in n and os.path.lexists(SYS_NET / n)]


def wait_gone(ifnames: Iterable[str], timeout: float) -> list[str]:
    """Wait until none of IFNAMES exists (the kernel destroys a netns's veth pairs
    asynchronously); return those still there after TIMEOUT seconds."""
    names = list(ifnames)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        remaining = host_links(names)
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.05)


def delete_links(ifnames: Iterable[str]) -> None:
    """Delete interfaces of this netns by name (RTM_DELLINK); absent ones are ignored.

    Deleting one end of a veth pair deletes both, and VLANs on it with them.
    """
    from . import rtnl  # only a subhost with cables, or a crashed one, needs it

    with rtnl.Rtnl() as link:
        for ifname in ifnames:
            try:
                link.delete(ifname)
            except OSError as exc:
                if exc.errno != errno.ENODEV:
                    raise SubhostError(f"cannot delete interface {ifname}: "
                                       f"{exc.strerror}") from exc


# -- making one ---------------------------------------------------------------------------

def _new_netns(target: Path, marker: Path, *, what: str) -> None:
    """Make a network namespace and bind it at TARGET, as `ip netns add` does: from this
    thread (a network namespace is a thread's), which then goes back to its own — no forked
    child on every start. Back in its own namespace or the process ends: everything after
    (the host cable ends, teardown) acts in it."""
    here = Path("/proc/thread-self/ns/net")
    own = os.open(here, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.unshare(libc.CLONE_NEWNET)
        try:
            set_up("lo")
            _write_mark(marker, _identity(here))  # before it is mounted
            libc.mount(here, target, flags=libc.MS_BIND)
        finally:
            _return_to(own)
    except OSError as exc:
        raise SubhostError(f"{what}: {exc}") from exc
    finally:
        os.close(own)


def _return_to(own: int) -> None:
    try:
        libc.setns(own, libc.CLONE_NEWNET)
    except OSError as exc:  # cannot happen to root; never go on in the wrong namespace
        log.error(f"cannot return to the host's network namespace: {exc}")
        log.flush()
        os._exit(1)


def set_up(ifname: str) -> None:
    """Set IFF_UP on an interface of the current thread's netns (ioctl SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        req = struct.pack("16sh", ifname.encode(), 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh", ifname.encode(), flags | _IFF_UP))


# -- helpers ------------------------------------------------------------------------------

@contextmanager
def _locked(directory: Path):
    """Serialise the shared-mount setup of /run/netns between concurrent starts."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _make_shared(directory: Path) -> None:
    """What iproute2 does: make DIR a shared mount, bind-mounting it onto itself if it is not
    a mount point, so netns binds made later propagate into every mount namespace."""
    try:
        libc.mount(None, directory, flags=libc.MS_SHARED | libc.MS_REC)
        return
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    libc.mount(directory, directory, flags=libc.MS_BIND | libc.MS_REC)
    libc.mount(None, directory, flags=libc.MS_SHARED | libc.MS_REC)


def _unlink(target: Path) -> None:
    try:
        target.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SubhostError(f"cannot remove {target}: {exc}") from exc


def in_thread(ns_fd: int, func: Callable[[], None], what: str) -> None:
    """Run FUNC in a thread that entered the network namespace NS_FD: setns is per thread, so
    the calling process stays where it is, and sockets FUNC makes belong to that namespace.

    Failing to enter raises SubhostError("WHAT: …"); FUNC's own exceptions are raised as are.
    """
    import threading

    failure: list[BaseException] = []

    def run() -> None:
        try:
            try:
                setns(ns_fd)
            except OSError as exc:
                raise SubhostError(f"{what}: {exc}") from exc
            func()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name=what)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
