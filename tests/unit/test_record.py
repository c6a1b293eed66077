"""record.Record: what the config records need of a frozen dataclass, without dataclasses."""

from __future__ import annotations

import pytest

from overlay_boot import record
from overlay_boot.record import Record


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
    with pytest.raises(TypeError, match="unexpected fields w"):
        record.replace(p, w=1)
