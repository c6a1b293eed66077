"""record.Record: what the plain-data classes need of a frozen dataclass, without dataclasses;
the records of the start path, and what they keep off it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from overlay_boot import record, state
from overlay_boot.errors import Problem
from overlay_boot.linux.mounts import Bind, Mask
from overlay_boot.record import Record, as_dict
from overlay_boot.record import replace as record_replace

REPO = Path(__file__).resolve().parents[2]


class Point(Record):
    x: int
    y: int
    label: str | None = None

    def __post_init__(self) -> None:
        if self.label is not None:
            object.__setattr__(self, "label", self.label.strip())


class Point3(Point):
    z: int = 0


def test_fields_by_position_keyword_and_default() -> None:
    p = Point(1, y=2)
    assert (p.x, p.y, p.label) == (1, 2, None)
    assert Point(1, 2, " a ").label == "a"  # __post_init__ ran
    assert record.fields(Point) == ("x", "y", "label")
    assert record.field_types(Point) == {"x": "int", "y": "int", "label": "str | None"}
    assert vars(Point(1, 2)) == {"x": 1, "y": 2, "label": None}


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Point(1), "missing fields y"),
    (lambda: Point(1, 2, "a", 4), "takes 3 fields"),
    (lambda: Point(1, 2, x=3), "takes 3 fields"),
    (lambda: Point(1, 2, colour="red"), "unexpected fields colour"),
])
def test_wrong_arguments_are_refused(make: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()  # type: ignore[operator]


def test_equality_hash_and_repr() -> None:
    assert Point(1, 2) == Point(1, 2, None)
    assert Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != (1, 2, None)
    assert Point(1, 2) != Point3(1, 2)  # another class is never equal
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1, 2), Point(1, 2), Point(2, 2)}) == 2
    assert repr(Point(1, 2, "a")) == "Point(x=1, y=2, label='a')"


def test_frozen() -> None:
    p = Point(1, 2)
    with pytest.raises(AttributeError, match="frozen"):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del p.y
    assert p == Point(1, 2)


def test_replace_and_inheritance() -> None:
    p = Point(1, 2, "a")
    assert record.replace(p, y=7) == Point(1, 7, "a")
    assert p.y == 2
    assert record.fields(Point3) == ("x", "y", "label", "z")
    assert Point3(1, 2, z=3) == Point3(x=1, y=2, label=None, z=3)
    assert Point3(1, 2, " b ", 4).label == "b"  # the parent's __post_init__ runs
    assert Point3(x=1, y=2, label=" c ", z=4).label == "c"
    with pytest.raises(TypeError, match="unexpected fields w"):
        record.replace(p, w=1)


# --- the records of the start path -----------------------------------------------------------

def test_problem_is_made_printable_and_compared() -> None:
    problem = Problem("/etc/a\nb.conf", "bad\x1b[2J value", "BASE", 3)
    assert (problem.path, problem.message) == ("/etc/a\\nb.conf", "bad\\x1b[2J value")
    assert problem == Problem("/etc/a\nb.conf", "bad\x1b[2J value", "BASE", 3)
    assert problem != Problem("/etc/a\nb.conf", "bad\x1b[2J value", "BASE", 4)
    assert str(Problem("/c", "wrong", "NAME", 2)) == "/c:2: NAME: wrong"


def test_runtime_record_replace_keeps_the_rest() -> None:
    record = state.Runtime(name="x", config="/c", supervisor_pid=10, leader_pid=11, root="/r",
                           interfaces=("x0",))
    running = record_replace(record, state="running", supervisor_pid=11)
    assert (running.state, running.supervisor_pid, running.started, running.interfaces) == (
        "running", 11, record.started, ("x0",))
    assert record.state == "starting"
    assert state.Runtime(**as_dict(record)) == record


def test_mount_operations_compare_by_fields() -> None:
    assert Bind(Path("/a"), PurePosixPath("/b"), create=True) == \
        Bind(Path("/a"), PurePosixPath("/b"), create=True)
    assert Bind(Path("/a"), PurePosixPath("/b")) != Bind(Path("/a"), PurePosixPath("/c"))
    assert Mask(PurePosixPath("/m")).note == ""


def test_start_path_modules_do_not_load_dataclasses() -> None:
    """Importing `dataclasses` costs every start ~25 ms (inspect, ast, dis, tokenize): the
    unit's main process (`overlay-boot --instance`: cli.boot, the supervisor and all they
    import, config parsing included) keeps it out."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "import overlay_boot.cli.boot, overlay_boot.supervisor, overlay_boot.systemd\n"
        "print([m for m in ('dataclasses', 'inspect', 'typing', 'subprocess') "
        "if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
