"""The status pipe PID 1 → supervisor: its messages, encoder and decoder in one place.

PID 1 inherits the write end; one message per line (UTF-8, ``\\n``-terminated):

* ``STATUS <text>`` — progress, forwarded to systemd as ``STATUS=``; its first word is the
  subhost's state in the runtime record (starting, stopping);
* ``SERVICE <word> <state>`` — a START word's state (SERVICE_STATES), for the runtime record
  and so the D-Bus properties;
* ``READY`` — every START word was tried (again after each reboot);
* ``ERROR <message>`` — the start failed before init took over; PID 1 exits right after.

Whoever reaches PID 1's descriptors could write to the pipe: the reader bounds and checks
what it gets (``supervisor.py``). Loaded by PID 1: nothing but the language itself here.
"""

from __future__ import annotations

SERVICE_STATES = frozenset({"starting", "started", "stopping", "stopped", "failed"})


def status(text: str) -> str:
    return f"STATUS {' '.join(text.split())}"


def service(word: str, state: str) -> str:
    return f"SERVICE {word} {state}"


def ready() -> str:
    return "READY"


def error(message: str) -> str:
    return f"ERROR {' '.join(message.split())}"  # one line


def encode(line: str) -> bytes:
    return line.encode("utf-8", "replace") + b"\n"


def parse(line: str) -> tuple[str, str, str]:
    """(kind, first, rest) of one line: ("STATUS", text, ""), ("SERVICE", word, state),
    ("READY", "", ""), ("ERROR", message, ""); ("", line, "") for anything else."""
    kind, _, text = line.partition(" ")
    if kind == "SERVICE":
        word, _, state = text.partition(" ")
        return kind, word, state
    if kind in ("STATUS", "ERROR") or (kind == "READY" and not text):
        return kind, text, ""
    return "", line, ""
