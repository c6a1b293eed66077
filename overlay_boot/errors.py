"""Errors shared by every layer, and the exit statuses they map to."""

from __future__ import annotations

from dataclasses import dataclass

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 64
EX_CONFIG = 78  # sysexits.h EX_CONFIG: the configuration is wrong


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file, located as precisely as known."""

    path: str
    message: str
    variable: str | None = None
    line: int | None = None

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
