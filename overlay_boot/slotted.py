"""Plain data classes for the start path, without `dataclasses`.

``@dataclass`` costs ~1 ms per class when a module is imported (it compiles the methods it
writes), and importing `dataclasses` pulls in `inspect` (~25 ms in all): every supervisor pays
that on every start for the classes it loads. A `Slotted` subclass names its fields in
``__slots__`` and sets them in its own ``__init__``, whose parameters are those fields; equality,
hash, repr, `as_dict` and `replace` come from here, by those fields, in their order. Treated as
immutable once made, like a frozen dataclass (`replace` makes a changed copy).
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Self


class Slotted:
    __slots__ = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def as_dict(self) -> dict:
        """The fields by name, as ``dataclasses.asdict`` (values not copied)."""
        return {name: getattr(self, name) for name in self.__slots__}

    def replace(self, **changes: object) -> Self:
        """A copy with CHANGES, as ``dataclasses.replace`` (through ``__init__``)."""
        return type(self)(**{**self.as_dict(), **changes})

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"
