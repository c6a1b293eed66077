"""PID 1 is a fresh, lean interpreter (linux/entry.py), and never runs the subhost's files.

Real subhosts (``overlay-boot CONF`` without systemd); PID 1's modules are read from inside
PID 1 through its control socket (``{"op": "modules"}``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from overlay_boot import control
from tests.subhostkit import Lab

pytestmark = pytest.mark.root

# What PID 1 of ours is made of; a module more here is a decision (its memory: `make bench`).
PID1_OWN = {
    "overlay_boot", "overlay_boot.control_wire", "overlay_boot.jsonlite", "overlay_boot.log",
    "overlay_boot.linux",
    "overlay_boot.linux.confine", "overlay_boot.linux.control_server",
    "overlay_boot.linux.init", "overlay_boot.linux.journal", "overlay_boot.linux.libc",
    "overlay_boot.linux.pivot", "overlay_boot.linux.runfiles", "overlay_boot.status_wire",
}
# Measured with /usr/bin/python3 -I -S (PSS, 20 running): each of these costs PID 1 0.5 to
# 1.6 MiB more (dataclasses pulls in inspect, ast, dis, tokenize…).
HEAVY = {"dataclasses", "typing", "pathlib", "inspect", "subprocess", "threading", "logging",
         "argparse", "asyncio", "ast", "dis", "tokenize", "traceback", "shlex", "tempfile",
         "pyroute2", "dbus_next", "pystemd", "lxml", "importlib.metadata", "email",
         # the json package loads re: 0.3 MiB more (PID 1 speaks JSON through jsonlite.py)
         "json", "re"}
# The standard library's part: the interpreter's start, and what os, signal, socket, select,
# struct, termios, fcntl, _json, time, ctypes, array and warnings load.
STDLIB_ALLOWED = {
    "__future__", "__main__", "_abc", "_codecs", "_collections", "_collections_abc", "_ctypes",
    "_frozen_importlib", "_frozen_importlib_external", "_functools", "_imp", "_io", "_json",
    "_locale", "_operator", "_signal", "_socket", "_stat", "_struct", "_thread",
    "_warnings", "_weakref", "abc", "array", "builtins", "codecs", "collections",
    "collections.abc", "copyreg", "ctypes", "ctypes._endian", "encodings", "encodings.aliases",
    "encodings.utf_8", "encodings.latin_1", "enum", "errno", "fcntl", "functools",
    "genericpath", "io", "itertools",
    "keyword", "marshal", "math", "operator", "os", "os.path", "posix", "posixpath",
    "reprlib", "select",
    "selectors", "signal", "socket", "stat", "struct", "sys", "termios", "time", "types",
    "warnings", "zipimport", "_weakrefset", "_sitebuiltins", "atexit",
}


def _leader(lab: Lab, name: str) -> int:
    return int(lab.record(name, state="running")["leader_pid"])


def test_pid1_is_exec_d_and_holds_only_light_modules(lab: Lab) -> None:
    conf = lab.config("START=none\n")
    name = conf.stem
    result = lab.start(conf)
    assert result.returncode == 0, result.stderr
    leader = _leader(lab, name)
    argv = Path(f"/proc/{leader}/cmdline").read_bytes().split(b"\0")[:-1]
    assert argv[1:4] == [b"-I", b"-S", os.fsencode(Path(control.__file__).parent
                                                  / "linux" / "entry.py")]
    # Exercise what PID 1 loads lazily (a command with our descriptors passed), then look.
    assert lab.go(name, "true").returncode == 0
    modules = set(control.loaded_modules(name))
    ours = {m for m in modules if m.split(".")[0] == "overlay_boot"}
    assert ours == PID1_OWN
    assert not modules & HEAVY
    assert modules - ours <= STDLIB_ALLOWED, sorted(modules - ours - STDLIB_ALLOWED)


PLANT = (
    "import os\n"
    "with open('/planted-ran', 'a') as f:\n"
    "    f.write(f'{__name__} pid={os.getpid()}\\n')\n"
)


def _stdlib_dirs() -> list[Path]:
    """Where PID 1's interpreter (the one running the tests' commands) and Debian's look."""
    ours = Path(os.__file__).parent
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return [ours, Path("/usr/lib") / version, Path("/usr/lib/python3/dist-packages")]


def test_modules_planted_in_upper_never_run_in_pid1(lab: Lab) -> None:
    conf = lab.config("START=none\n")
    name = conf.stem
    upper = conf.parent / "root"
    package_root = Path(control.__file__).parent.parent
    for directory in [*_stdlib_dirs(), package_root]:
        planted = upper / directory.relative_to("/")
        for module in ("json/__init__.py", "sitecustomize.py", "warnings.py", "array.py",
                       "encodings/idna.py", "encodings/cp437.py", "selectors.py",
                       "overlay_boot/__init__.py", "overlay_boot/linux/init.py"):
            (planted / module).parent.mkdir(parents=True, exist_ok=True)
            (planted / module).write_text(PLANT)
    result = lab.start(conf)
    assert result.returncode == 0, result.stderr
    _leader(lab, name)
    # PID 1 at work: commands started with and without descriptors, a module listing.
    assert lab.go(name, "true").returncode == 0
    assert lab.go(name, "sh", "-c", "echo x >/dev/null", input="").returncode == 0
    loaded = control.loaded_modules(name)
    assert "array" in loaded and "selectors" in loaded and "json" not in loaded
    # The plants are where an import inside would find them: a Python inside runs one.
    check = lab.go(name, sys.executable, "-I", "-S", "-c", "import selectors")
    assert check.returncode == 0, check.stderr
    ran = (upper / "planted-ran").read_text().splitlines()
    assert any(line.startswith("selectors pid=") for line in ran), ran
    assert lab.stop(name).returncode == 0
    ran = (upper / "planted-ran").read_text().splitlines()
    assert not [line for line in ran if line.endswith(" pid=1")], ran
