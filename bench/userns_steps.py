"""What USERNS= adds to a start, step by step, with overlay-boot's own code (root, stdlib only).

    python3 bench/userns_steps.py [RUNS]

Interleaved pairs, after one warm-up pair: (1) the supervisor's network namespace,
``netns.create`` against ``netns.create_in_userns`` (the helper that makes the user namespace);
(2) in a forked child standing for PID 1: a private mount namespace and the root overlay of
``/``, the plain ``mounts.plan_root`` op against the ``IdmappedOverlay`` op under
``MappedCreator``, then for USERNS= the switch into the user namespace (``become_root``,
unshare, the bind of LIVE through the working directory). The whole-start difference is
below the noise of a command-line start (~0.4 s of process start-ups) on a shared machine.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from overlay_boot import netns  # noqa: E402
from overlay_boot.config import Config, IdRange  # noqa: E402
from overlay_boot.linux import boot, libc, mounts, userns  # noqa: E402

IDS = IdRange(1 << 21)


def timed(func, *args) -> float:
    t0 = time.perf_counter()
    func(*args)
    return (time.perf_counter() - t0) * 1000


def netns_default(name: str) -> None:
    netns.create(name)
    netns.remove(name)


def netns_userns(name: str) -> None:
    _, fd = netns.create_in_userns(name, IDS)
    os.close(fd)
    netns.remove(name)


def in_child(func) -> float:
    """FUNC's time in a forked child (ms), as PID 1 would run it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            libc.unshare(libc.CLONE_NEWNS)
            libc.mount(None, "/", None, libc.MS_SLAVE | libc.MS_REC)
            os.write(w, repr(timed(func)).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 100)
    os.close(r)
    os.waitpid(pid, 0)
    return float(data)


def root_default(config: Config) -> None:
    for op in mounts.plan_root(config):
        op.execute(Path("/"))


def root_userns(config: Config, userns_fd: int) -> None:
    with userns.MappedCreator(IDS):
        for op in mounts.plan_root(config, userns_fd):
            op.execute(Path("/"))
    os.chdir(config.live)
    userns.become_root(userns_fd)
    libc.unshare(boot._CHILD_NAMESPACES)
    boot._bind_cwd_onto_itself()


def spread(values: list[float]) -> str:
    v = sorted(values)
    n = len(v)
    return f"{statistics.median(v):6.2f} ({v[n // 4]:.2f}-{v[3 * n // 4]:.2f})"


def main(runs: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="userns-steps-"))
    os.chmod(scratch, 0o700)
    for sub in ("live", "root", "work"):
        (scratch / sub).mkdir()
    config = Config(path=scratch / "b.conf", name="usbench", base=scratch,
                    live=scratch / "live", upper=scratch / "root", work=scratch / "work",
                    lower=(Path("/"),), userns=IDS)
    userns_fd = userns.new_userns(IDS)
    results: dict[str, list[float]] = {}
    try:
        for i in range(runs + 1):
            pairs = {
                "supervisor: network namespace": (
                    timed(netns_default, "usbench"), timed(netns_userns, "usbench")),
                "PID 1: root overlay (+ entering the user namespace)": (
                    in_child(lambda: root_default(config)),
                    in_child(lambda: root_userns(config, userns_fd))),
            }
            if i == 0:
                continue  # warm-up
            for step, (plain, mapped) in pairs.items():
                results.setdefault(f"{step}: default", []).append(plain)
                results.setdefault(f"{step}: USERNS=", []).append(mapped)
                results.setdefault(f"{step}: added", []).append(mapped - plain)
    finally:
        os.close(userns_fd)
        shutil.rmtree(scratch)
    print(f"median (25th-75th percentile) of {runs} interleaved runs, ms; "
          f"load {os.getloadavg()[0]:.1f}")
    for key, values in results.items():
        print(f"  {key:62} {spread(values)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
