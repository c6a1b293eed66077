"""The shared cable service (overlay_boot.netd) and its client (net.build_through_service,
what the supervisor uses for subhosts with VLANs) on the real kernel, with both interpreters
the project supports.

The service is started as systemd would start it: a listening socket the test made, passed as
fd 3 with LISTEN_FDS/LISTEN_PID. The client runs inside a stand-in host netns the test made
(``ip netns exec HOST``) and passes that namespace along, so the host ends, the bridge and all
traffic stay in the test's own namespaces although the service runs in the real host netns.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlay_boot import netns
from overlay_boot.config import Cable

from .test_net import INTERPRETERS, REPO, _unique, ip, is_up, link, links

pytestmark = pytest.mark.root

# What systemd does before exec: the socket at fd 3, LISTEN_PID = the service's own PID.
LAUNCH = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[2], sys.argv[2:])
"""
CLIENT = """\
import sys
from overlay_boot import net
from overlay_boot.config import Cable, Vlan
from overlay_boot.errors import SubhostError
try:
    net.build_through_service(sys.argv[1], eval(sys.argv[2]), eval(sys.argv[3]))
except SubhostError as exc:
    print("ERROR", exc)
    sys.exit(3)
print("pyroute2 in client:", any(m.startswith("pyroute2") for m in sys.modules))
"""
RAW_CLIENT = """\
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(20)
s.connect(sys.argv[1])
fds = [os.open("/proc/self/ns/net", os.O_RDONLY)] if sys.argv[3] == "fd" else []
socket.send_fds(s, [sys.argv[2].encode()], fds)
print(s.recv(65536).decode())
"""


@pytest.fixture(params=sorted(INTERPRETERS))
def python(request) -> str:
    return INTERPRETERS[request.param][0]


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short private directory for the test's socket (sun_path has 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="tnetd", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(64)
    return sock


class Service:
    """``python -m overlay_boot.netd`` on a listening socket, as socket activation runs it."""

    def __init__(self, python: str, listener: socket.socket, log: Path, idle: float) -> None:
        self.log_path = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [python, "-c", LAUNCH, str(listener.fileno()), python, "-m",
                 "overlay_boot.netd", "--idle", str(idle)],
                pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL, stdout=out,
                stderr=out, env=dict(os.environ, PYTHONPATH=str(REPO), OVERLAY_BOOT_DEBUG="1"))

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def service(python: str, sockdir: Path) -> Iterator[tuple[Service, Path]]:
    """(the running service, its socket path); the socket is the test's, like systemd's."""
    path = sockdir / "net.sock"
    listener = listening(path)
    svc = Service(python, listener, sockdir / "netd.log", idle=60)
    try:
        yield svc, path
    finally:
        svc.stop()
        listener.close()


@pytest.fixture
def spaces() -> Iterator[tuple[str, str, str]]:
    """(subhost netns, stand-in host netns, peer netns), removed whatever happened."""
    names = (_unique("t"), _unique("t"), _unique("t"))
    try:
        for name in names:
            netns.create(name)
        yield names
    finally:
        for name in names:
            netns.remove(name)
        # were anything made in the real host netns by mistake, it must not stay there
        netns.delete_links([f"{names[0]}{i}" for i in range(3)])


def client(python: str, sock: Path, sub: str, host: str, cables, vlans=(),
           user: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OVERLAY_BOOT_NET_SOCKET=str(sock),
               OVERLAY_BOOT_DEBUG="1")
    return subprocess.run(["ip", "netns", "exec", host, python, "-c", CLIENT, sub,
                           repr(list(cables)), repr(list(vlans))],
                          capture_output=True, text=True, env=env, timeout=60, user=user)


def raw_request(python: str, sock: Path, request: str, *, fd: bool = True,
                user: int | None = None) -> dict:
    result = subprocess.run([python, "-c", RAW_CLIENT, str(sock), request,
                             "fd" if fd else "nofd"],
                            capture_output=True, text=True, timeout=30, user=user)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -----------------------------------------------------------------------------------------

def test_bridged_cable_with_mac_through_the_service(python, service, spaces):
    svc, sock = service
    sub, host, peer = spaces
    bridge = _unique("tbr", 4)
    ip("link", "add", bridge, "type", "bridge", in_netns=host)
    ip("link", "set", bridge, "up", in_netns=host)
    cables = [Cable(0, f"{sub}0", "eth0", bridge, "02:5e:10:21:32:44", 3),
              Cable(1, f"{sub}1", "eth1", None, None, None)]
    result = client(python, sock, sub, host, cables)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pyroute2 in client: False" in result.stdout
    assert wait_for(lambda: f"cables of subhost {sub} built (2 cables" in svc.log()), svc.log()
    assert "building in a child" not in result.stderr

    # the host ends are in the client's netns (HOST), not in the service's
    assert links(sub) == ["lo", "eth0", "eth1"]
    assert link("eth0", sub)["address"] == "02:5e:10:21:32:44"
    assert not is_up("eth0", sub) and not is_up("eth1", sub)
    assert link(f"{sub}0", host)["master"] == bridge
    assert is_up(f"{sub}0", host) and is_up(f"{sub}1", host)
    assert not os.path.lexists(f"/sys/class/net/{sub}0")

    # a real ping across the bridge, between the subhost and a peer netns of the test
    ip("link", "add", "tpeer", "type", "veth", "peer", "name", "eth0", "netns", peer,
       in_netns=host)
    ip("link", "set", "tpeer", "master", bridge, "up", in_netns=host)
    net = f"10.214.{int.from_bytes(os.urandom(1)) % 250 + 1}"
    for ns, address in ((sub, f"{net}.2"), (peer, f"{net}.3")):
        ip("addr", "add", f"{address}/24", "dev", "eth0", in_netns=ns)
        ip("link", "set", "eth0", "up", in_netns=ns)
    ping = subprocess.run(["ip", "netns", "exec", sub, "ping", "-c1", "-W2", f"{net}.3"],
                          capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_a_failure_is_answered_not_retried(python, service, spaces):
    svc, sock = service
    sub, host, _ = spaces
    cables = [Cable(0, f"{sub}0", "eth0", None, None, None),
              Cable(1, f"{sub}1", "eth1", "tnobr", None, None)]
    result = client(python, sock, sub, host, cables)
    assert result.returncode == 3, result.stdout + result.stderr
    assert (f"ERROR cables of subhost {sub}: adding {sub}1 to bridge tnobr: "
            "bridge tnobr does not exist") in result.stdout
    assert "building in a child" not in result.stderr and "pyroute2" not in result.stderr
    assert links(host) == ["lo"] and links(sub) == ["lo"]  # rolled back by the service
    assert svc.log().count(f"cables of subhost {sub}:") == 1
    # the service is still there for the next subhost
    good = client(python, sock, sub, host, cables[:1])
    assert good.returncode == 0, good.stdout + good.stderr
    assert links(sub) == ["lo", "eth0"]


def test_non_root_is_refused(python, service, spaces):
    svc, sock = service
    sub, _, _ = spaces
    # The socket is 0600: a non-root client can't even connect. Opened up here, so the
    # service's own check (SO_PEERCRED) is what refuses.
    os.chmod(sock.parent, 0o755)
    os.chmod(sock, 0o666)
    request = json.dumps({"netns": sub, "cables": [vars(Cable(0, f"{sub}0", "eth0", None,
                                                              None, None))], "vlans": []})
    answer = raw_request(python, sock, request, user=65534)
    assert answer == {"ok": False, "error": "permission denied: only root may build cables"}
    assert links(sub) == ["lo"]
    assert "refused a request of uid 65534" in svc.log()


def test_bad_requests_are_answered_with_an_error(python, service, spaces):
    svc, sock = service
    sub, host, _ = spaces
    cable = vars(Cable(0, f"{sub}0", "eth0", None, None, None))
    bad = {
        "not json": "not JSON",
        json.dumps([1, 2]): "expected an object",
        json.dumps({"netns": sub, "cables": []}): "expected an object",
        json.dumps({"netns": "../etc", "cables": [], "vlans": []}): "bad network namespace",
        json.dumps({"netns": _unique("tno"), "cables": [], "vlans": []}):
            "there is no network namespace",
        json.dumps({"netns": sub, "cables": {}, "vlans": []}): '"cables" must be a list',
        json.dumps({"netns": sub, "cables": [{**cable, "evil": 1}], "vlans": []}):
            "a cable must be an object with exactly",
        json.dumps({"netns": sub, "cables": [{**cable, "index": "0"}], "vlans": []}):
            "cable field index: unexpected str",
        json.dumps({"netns": sub, "cables": [], "vlans": [{"tag": 5}]}):
            "a VLAN must be an object with exactly",
    }
    for request, message in bad.items():
        answer = raw_request(python, sock, request)
        assert answer["ok"] is False and message in answer["error"], (request, answer)
    answer = raw_request(python, sock, json.dumps({"netns": sub, "cables": [cable],
                                                   "vlans": []}), fd=False)
    assert answer["ok"] is False and "network namespace as the one file descriptor" in \
        answer["error"]
    assert links(sub) == ["lo"]
    # and after all that, a good request is served
    result = client(python, sock, sub, host, [Cable(**cable)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert links(sub) == ["lo", "eth0"]


def test_idle_exit_and_a_request_waiting_in_the_queue(python, sockdir, spaces):
    """Like socket activation: the service exits when idle, the listening socket stays; a
    request made meanwhile waits in its queue for the next start."""
    sub, host, _ = spaces
    path = sockdir / "net.sock"
    listener = listening(path)
    first = Service(python, listener, sockdir / "netd.log", idle=1)
    second: Service | None = None
    try:
        assert first.proc.wait(30) == 0, first.log()
        assert "idle for 1 s: exiting" in first.log()
        pending = threading.Thread(target=lambda: results.append(
            client(python, path, sub, host, [Cable(0, f"{sub}0", "eth0", None, None, None)])))
        results: list[subprocess.CompletedProcess[str]] = []
        pending.start()
        time.sleep(0.5)  # connected and waiting: nobody accepts yet
        assert not results
        second = Service(python, listener, sockdir / "netd.log", idle=1)
        pending.join(60)
        assert results and results[0].returncode == 0, results
        assert "building in a child" not in results[0].stderr
        assert links(sub) == ["lo", "eth0"]
        assert second.proc.wait(30) == 0, second.log()
    finally:
        first.stop()
        if second is not None:
            second.stop()
        listener.close()


def test_falls_back_to_a_forked_child_without_a_service(python, sockdir, spaces):
    sub, host, _ = spaces
    cables = [Cable(0, f"{sub}0", "eth0", None, "02:5e:10:21:32:45", None)]
    # no socket at all
    result = client(python, sockdir / "absent.sock", sub, host, cables)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pyroute2 in client: False" in result.stdout
    assert "building in a child" in result.stderr  # said at debug level only
    assert links(sub) == ["lo", "eth0"]
    assert link("eth0", sub)["address"] == "02:5e:10:21:32:45"
    ip("link", "del", f"{sub}0", in_netns=host)

    # a stale socket file nobody listens on (ECONNREFUSED), and no debug: nothing is said
    stale = sockdir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as dead:
        dead.bind(str(stale))
    env = dict(os.environ, PYTHONPATH=str(REPO), OVERLAY_BOOT_NET_SOCKET=str(stale))
    env.pop("OVERLAY_BOOT_DEBUG", None)
    quiet = subprocess.run(["ip", "netns", "exec", host, python, "-c", CLIENT, sub,
                            repr(cables), "[]"], capture_output=True, text=True, env=env,
                           timeout=60)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert quiet.stderr == ""
    assert links(sub) == ["lo", "eth0"]


def test_falls_back_when_the_service_hangs_up_without_an_answer(python, sockdir, spaces):
    """A service that can't start (systemd gives up and closes the socket) or crashes before
    answering: the client builds the cables itself, with a warning."""
    sub, host, _ = spaces
    path = sockdir / "net.sock"
    listener = listening(path)

    def hang_up() -> None:  # takes the request, then dies without answering
        conn, _ = listener.accept()
        _, fds, _, _ = socket.recv_fds(conn, 65536, 4)
        for fd in fds:
            os.close(fd)
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    try:
        result = client(python, path, sub, host,
                        [Cable(0, f"{sub}0", "eth0", None, None, None)])
    finally:
        thread.join(10)
        listener.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "closed the connection without an answer" in result.stderr
    assert links(sub) == ["lo", "eth0"]


def test_refuses_to_run_without_a_passed_socket(python):
    result = subprocess.run([python, "-m", "overlay_boot.netd"], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=30)
    assert result.returncode == 1
    assert "no listening socket passed" in result.stderr
