"""PID 1's own interpreter: ``python3 -I -S .../overlay_boot/linux/entry.py FD``.

Exec'd by the forked child of the supervisor (``linux/boot.py``) once the subhost's tree is
built, before ``pivot_root``: this file, the interpreter and every module PID 1 will ever use
are the host's. FD is a memfd holding the plan as JSON (written by ``boot._exec_pid1``):

    {"tag": str, "name": str, "live": str, "in_live": bool, "status_fd": int,
     "journal_fd": int|null, "log_fd": int|null,
     "confinement": {"added": [str], "everything": bool, "mask": int},
     "init": {linux.init.InitSettings's keyword arguments}}

The descriptors it names are inherited. A fresh interpreter holds only what is imported here,
not the supervisor's heap (docs/ARCHITECTURE.md, "Processes"): the standard library's light
modules, ctypes, and overlay_boot's lean PID 1 modules. After ``pivot_root`` the import system
loads nothing from files any more: the subhost's own /usr/lib/python3 is never read.
"""

import os
import sys

_MAX_PLAN = 64 << 20


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_plan(fd: int) -> dict:
    from overlay_boot import jsonlite

    chunks = []
    size = 0
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_PLAN:
            raise ValueError("plan too large")
    os.close(fd)
    plan = jsonlite.loads(b"".join(chunks))
    if not isinstance(plan, dict):
        raise ValueError("plan is not an object")
    return plan


def seal_imports() -> None:
    """From now on, import nothing from a file: only built-in and frozen modules load. The
    files at the old paths are the subhost's (planted code would run as PID 1)."""
    sys.meta_path[:] = [finder for finder in sys.meta_path
                        if getattr(finder, "__name__", "") in ("BuiltinImporter",
                                                               "FrozenImporter")]
    sys.path[:] = []
    sys.path_hooks[:] = []
    sys.path_importer_cache.clear()


def main(argv: list[str]) -> None:
    sys.path.insert(0, _package_root())
    # What PID 1 uses lazily, loaded now from the host's files: socket.send_fds/recv_fds
    # import array when first called, os.execvpe (os.get_exec_path) warnings.
    import array  # noqa: F401
    import socket
    import warnings  # noqa: F401

    from overlay_boot import log, status_wire
    from overlay_boot.linux import confine, init, pivot

    plan = read_plan(int(argv[1]))
    status_fd = int(plan["status_fd"])
    log.configure(tag=str(plan["tag"]), extra_fd=plan.get("log_fd"))
    name = str(plan["name"])
    try:
        journal_fd = plan.get("journal_fd")
        host_journal = None if journal_fd is None else socket.socket(fileno=int(journal_fd))
        if host_journal is not None:
            host_journal.set_inheritable(False)
        rules = plan["confinement"]
        relay = pivot.enter_root(
            name, str(plan["live"]), host_journal,
            confine.Confinement(tuple(rules["added"]), bool(rules["everything"]),
                                int(rules["mask"])),
            in_live=bool(plan["in_live"]))
        seal_imports()
        settings = init.InitSettings(**plan["init"])
    except BaseException as exc:  # noqa: BLE001 - reported as the start's failure
        text = str(exc) if isinstance(exc, pivot.StepError) else f"{type(exc).__name__}: {exc}"
        try:
            os.write(status_fd, status_wire.encode(status_wire.error(text)))
        except OSError:
            log.error(f"subhost {name}: {text}")
        log.flush()
        os._exit(1)
    init.run(settings, status_fd, relay)


if __name__ == "__main__":
    main(sys.argv)
