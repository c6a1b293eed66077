"""Errors shared by every layer, and the exit statuses they map to."""

from __future__ import annotations

EX_FAILURE = 1
EX_USAGE = 64
EX_CONFIG = 78  # sysexits.h EX_CONFIG: the configuration is wrong


MESSAGE_LIMIT = 400


def printable(text: str) -> str:
    """TEXT with what a terminal or a log would not show as itself (line breaks, escape
    sequences, other control and unassigned characters) written as Python escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clip(text: str, limit: int) -> str:
    """TEXT shortened in the middle to at most LIMIT characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = (limit - 40) // 2
    return f"{text[:keep]}…[{len(text) - 2 * keep} characters]…{text[-keep:]}"


class Problem:
    """One thing wrong with a configuration file, located as precisely as known. Immutable.

    A plain class rather than a frozen @dataclass: every command imports this module, and
    dataclasses (with inspect, ast, dis…) was a fifth of overlay-go's whole run.
    """

    __slots__ = ("path", "message", "variable", "line")
    path: str
    message: str
    variable: str | None
    line: int | None

    def __init__(self, path: str, message: str, variable: str | None = None,
                 line: int | None = None) -> None:
        # A value quoted in a message may be anything a file or a `!` command held (a 64 MiB
        # line, a line break in a file name, escape sequences): one report stays one readable
        # line in a terminal and in a log.
        for attribute, value in (("path", printable(path)),
                                 ("message", clip(printable(message), MESSAGE_LIMIT)),
                                 ("variable", variable), ("line", line)):
            object.__setattr__(self, attribute, value)

    def __setattr__(self, attribute: str, value: object) -> None:
        raise AttributeError(f"a Problem cannot be changed ({attribute})")

    def __delattr__(self, attribute: str) -> None:
        raise AttributeError(f"a Problem cannot be changed ({attribute})")

    def _fields(self) -> tuple[str, str, str | None, int | None]:
        return self.path, self.message, self.variable, self.line

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Problem:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return ("Problem(path={!r}, message={!r}, variable={!r}, line={!r})"
                .format(*self._fields()))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f"{self.variable}: " if self.variable else ""
        return f"{where}: {what}{self.message}"


class ConfigError(Exception):
    """A configuration is unusable; nothing has been created yet. Exit status 78."""

    exit_status = EX_CONFIG

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SubhostError(Exception):
    """Starting, running or stopping a subhost failed (not the configuration's fault)."""

    exit_status = EX_FAILURE
