"""What one bind costs: ``mount(MS_BIND)`` against the bind primitive (root, stdlib only).

    python3 bench/bind_primitive.py [ROUNDS]

In a mount namespace of its own, as PID 1's (``/`` recursively slave, a private tmpfs to
work in), interleaved batches of 10 ``nodev`` binds of one directory, each
batch unmounted again so that the mount table stays small: (1) ``mount(MS_BIND)`` on the
target's descriptor and ``mount_setattr(nodev)``, as ``mounts.Bind`` did before; (2)
``share.clone_tree`` with the attributes (one ``mount_setattr`` for slave and nodev) and
``share.attach``, as ``mounts.Bind`` does now; (3) the attributes added at ``attach`` instead
(a second ``mount_setattr``), as a run-time share does. Prints the median and p90 per bind.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from overlay_boot.linux import libc, resolve, share  # noqa: E402

BATCH = 10
NODEV = libc.MOUNT_ATTR_NODEV


def mount_bind(source: str, target: str) -> None:
    fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
    try:
        libc.mount(source, resolve.fd_path(fd), None, libc.MS_BIND)
    finally:
        os.close(fd)
    fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
    try:
        libc.mount_setattr(fd, "", libc.AT_EMPTY_PATH, attr_set=NODEV)
    finally:
        os.close(fd)


def primitive(source: str, target: str, at_attach: bool = False) -> None:
    tree = share.clone_tree(source, attributes=0 if at_attach else NODEV)
    try:
        fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
        try:
            share.attach(tree, fd, NODEV if at_attach else 0)
        finally:
            os.close(fd)
    finally:
        os.close(tree)


def measure(rounds: int, work: str) -> dict[str, list[float]]:
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount(None, "/", None, libc.MS_SLAVE | libc.MS_REC)
    libc.mount("tmpfs", work, "tmpfs", 0, "mode=755")
    libc.mount(None, work, None, libc.MS_PRIVATE)
    source = os.path.join(work, "source")
    os.mkdir(source)
    targets = [os.path.join(work, str(i)) for i in range(BATCH)]
    for target in targets:
        os.mkdir(target)
    ways = {
        "mount(MS_BIND) + mount_setattr": lambda s, t: mount_bind(s, t),
        "clone_tree(attributes) + attach (boot)": lambda s, t: primitive(s, t),
        "clone_tree + attach(attributes) (run time)": lambda s, t: primitive(s, t, True),
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds + 1):  # the first round warms up and is dropped
        for name, way in ways.items():
            start = time.perf_counter_ns()
            for target in targets:
                way(source, target)
            results[name].append((time.perf_counter_ns() - start) / BATCH / 1000)
            for target in targets:
                libc.umount2(target)
    return {name: values[1:] for name, values in results.items()}


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    work = tempfile.mkdtemp(prefix="bind-bench-")
    try:
        results = measure(rounds, work)  # this process enters a mount namespace of its own
    finally:
        libc.umount2(work, libc.MNT_DETACH)
        os.rmdir(work)
    print(f"per bind, {rounds} batches of {BATCH}:")
    for name, values in results.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"{name}: median {statistics.median(values):.1f} µs, p90 {p90:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
