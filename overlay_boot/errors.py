"""Errors shared by every layer, and the exit statuses they map to."""

from __future__ import annotations

from overlay_boot.slotted import Slotted

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


class Problem(Slotted):
    """One thing wrong with a configuration file, located as precisely as known."""

    __slots__ = ("path", "message", "variable", "line")

    def __init__(self, path: str, message: str, variable: str | None = None,
                 line: int | None = None) -> None:
        # A value quoted in a message may be anything a file or a `!` command held (a 64 MiB
        # line, a line break in a file name, escape sequences): one report stays one readable
        # line in a terminal and in a log.
        self.path = printable(path)
        self.message = clip(printable(message), MESSAGE_LIMIT)
        self.variable = variable
        self.line = line

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
