"""`Slotted`, the plain data classes of the start path, and what they keep off it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath

from overlay_boot import state
from overlay_boot.errors import Problem
from overlay_boot.linux.mounts import Bind, Mask
from overlay_boot.slotted import Slotted

REPO = Path(__file__).resolve().parents[2]


class Pair(Slotted):
    __slots__ = ("left", "right")

    def __init__(self, left: int, right: str = "r") -> None:
        self.left = left
        self.right = right


def test_equality_hash_and_repr_by_fields() -> None:
    assert Pair(1) == Pair(1, "r")
    assert Pair(1) != Pair(2)
    assert Pair(1) != (1, "r")
    assert len({Pair(1), Pair(1), Pair(2)}) == 2
    assert repr(Pair(1)) == "Pair(left=1, right='r')"


def test_same_fields_of_another_class_differ() -> None:
    class Other(Pair):
        __slots__ = ()

    assert Pair(1) != Other(1)


def test_as_dict_and_replace() -> None:
    pair = Pair(1)
    assert pair.as_dict() == {"left": 1, "right": "r"}
    changed = pair.replace(right="x")
    assert (changed.left, changed.right, pair.right) == (1, "x", "r")


def test_problem_is_made_printable_and_compared() -> None:
    problem = Problem("/etc/a\nb.conf", "bad\x1b[2J value", "BASE", 3)
    assert (problem.path, problem.message) == ("/etc/a\\nb.conf", "bad\\x1b[2J value")
    assert problem == Problem("/etc/a\nb.conf", "bad\x1b[2J value", "BASE", 3)
    assert problem != Problem("/etc/a\nb.conf", "bad\x1b[2J value", "BASE", 4)
    assert str(Problem("/c", "wrong", "NAME", 2)) == "/c:2: NAME: wrong"


def test_runtime_record_replace_keeps_the_rest() -> None:
    record = state.Runtime(name="x", config="/c", supervisor_pid=10, leader_pid=11, root="/r",
                           interfaces=("x0",))
    running = record.replace(state="running", supervisor_pid=11)
    assert (running.state, running.supervisor_pid, running.started, running.interfaces) == (
        "running", 11, record.started, ("x0",))
    assert record.state == "starting"
    assert state.Runtime(**record.as_dict()) == record


def test_mount_operations_compare_by_fields() -> None:
    assert Bind(Path("/a"), PurePosixPath("/b"), create=True) == \
        Bind(Path("/a"), PurePosixPath("/b"), create=True)
    assert Bind(Path("/a"), PurePosixPath("/b")) != Bind(Path("/a"), PurePosixPath("/c"))
    assert Mask(PurePosixPath("/m")).note == ""


def test_start_path_modules_do_not_load_dataclasses() -> None:
    """Importing `dataclasses` costs every start ~25 ms (inspect, ast, dis, tokenize): the
    modules of the start path that do not need a parsed config keep it out."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "import overlay_boot.errors, overlay_boot.state, overlay_boot.netns, "
        "overlay_boot.machined, overlay_boot.linux.mounts, overlay_boot.slotted\n"
        "print([m for m in ('dataclasses', 'inspect', 'typing', 'subprocess') "
        "if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
