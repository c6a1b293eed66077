"""Frozen plain-data classes for the modules every start and the generator import.

A `Record` subclass is written as a frozen dataclass is (annotated fields, class-level
defaults) and gets the same ``__init__`` (by position or keyword), ``==``, ``hash``, ``repr``
and immutability. Why not ``@dataclass``: importing ``dataclasses`` pulls in ``inspect``
(with ``ast``, ``dis``, ``tokenize``) and each decorated class compiles generated code: about
a third of the systemd generator's start (issue #13), paid again by every command that parses a
config. `fields`, `field_types` and `replace` stand in for the ``dataclasses`` functions.
"""

from __future__ import annotations


class Record:
    """Base of a frozen record: its fields are the annotations of the subclass (and of
    the records it derives from, theirs first), in order."""

    _types: dict[str, object] = {}  # field name -> its annotation (a string, as written)
    _fields: tuple[str, ...] = ()
    _field_set: frozenset[str] = frozenset()
    _defaults: dict[str, object] = {}
    _post_init = False  # whether the class has a __post_init__ of its own to call

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The parent's fields first, then this class's own annotations (as dataclasses).
        cls._types = {**cls._types, **cls.__dict__.get("__annotations__", {})}
        cls._fields = tuple(cls._types)
        cls._field_set = frozenset(cls._fields)
        cls._defaults = {name: getattr(cls, name) for name in cls._fields
                         if hasattr(cls, name)}
        cls._post_init = cls.__post_init__ is not Record.__post_init__

    def __init__(self, *args: object, **kwargs: object) -> None:
        # The generator makes thousands of records: the usual calls (every field by
        # position, or by name) take the short ways.
        cls = type(self)
        names = cls._fields
        if args and not kwargs and len(args) == len(names):
            values = dict(zip(names, args, strict=True))
        else:
            if args:
                if len(args) > len(names) or not kwargs.keys().isdisjoint(names[:len(args)]):
                    raise TypeError(f"{cls.__name__}() takes {len(names)} fields, given "
                                    f"{len(args)} by position and {', '.join(kwargs)} by name")
                kwargs.update(zip(names, args, strict=False))  # the first; the rest by name
            # every field given (as the parser makes a Config): no defaults to merge
            values = kwargs if len(kwargs) == len(names) else {**cls._defaults, **kwargs}
            if values.keys() != cls._field_set:
                unknown = ", ".join(n for n in values if n not in cls._field_set)
                missing = ", ".join(n for n in names if n not in values)
                raise TypeError(f"{cls.__name__}(): unexpected fields {unknown or '-'}, "
                                f"missing fields {missing or '-'}")
        self.__dict__.update(values)
        if cls._post_init:
            self.__post_init__()

    def __post_init__(self) -> None:
        """Called at the end of ``__init__``, as a dataclass's; may set fields with
        ``object.__setattr__``."""

    def _values(self) -> tuple[object, ...]:
        d = self.__dict__
        return tuple(d[name] for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        d = self.__dict__
        inner = ", ".join(f"{name}={d[name]!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen "
                             f"{type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def fields(record: Record | type[Record]) -> tuple[str, ...]:
    """The field names of a record (class or instance), in order."""
    return record._fields


def field_types(record: Record | type[Record]) -> dict[str, object]:
    """Each field's annotation, in order (strings under ``from __future__ import
    annotations``)."""
    return dict(record._types)


def replace(record: Record, **changes: object) -> Record:
    """A copy of RECORD with CHANGES (``dataclasses.replace``)."""
    values = {name: record.__dict__[name] for name in record._fields}
    values.update(changes)
    return type(record)(**values)


def as_dict(record: Record) -> dict[str, object]:
    """The fields by name (``dataclasses.asdict``, but the values are not copied)."""
    return {name: record.__dict__[name] for name in record._fields}
