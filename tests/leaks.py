"""What a subhost may leave on the host, looked at for real: mounts, netns, links, processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class HostState:
    mounts: frozenset[str]
    netns: frozenset[str]
    links: frozenset[str]


def snapshot() -> HostState:
    mounts = frozenset(
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    netns_dir = Path("/run/netns")
    netns = frozenset(p.name for p in netns_dir.iterdir()) if netns_dir.is_dir() else frozenset()
    links = frozenset(os.listdir("/sys/class/net"))
    return HostState(mounts, netns, links)


def leftovers(before: HostState, name: str) -> list[str]:
    """Everything NAME left behind compared to BEFORE; empty when clean."""
    problems = []
    after = snapshot()
    for mount in sorted(after.mounts - before.mounts):
        problems.append(f"mount {mount}")
    for ns in sorted(after.netns - before.netns):
        problems.append(f"netns {ns}")
    for link in sorted(after.links - before.links):
        problems.append(f"link {link}")
    for path in (Path(f"/run/netns/{name}"), Path(f"/run/overlay-boot/{name}.json"),
                 Path(f"/run/overlay-boot/{name}.lock")):
        if path.exists():
            problems.append(f"file {path}")
    problems.extend(f"process {pid} {cmd}" for pid, cmd in processes_of(name))
    return problems


def processes_of(name: str) -> list[tuple[int, str]]:
    """Processes running in a UTS namespace whose hostname is NAME (i.e. inside the subhost)."""
    found = []
    own_uts = os.readlink("/proc/self/ns/uts")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            uts = os.readlink(f"/proc/{entry}/ns/uts")
            if uts == own_uts:
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            hostname = subprocess.run(
                ["nsenter", "-t", entry, "-u", "hostname"],
                capture_output=True, text=True, timeout=5,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if hostname == name:
            found.append((int(entry), cmdline.decode(errors="replace").strip()))
    return found


def wait_clean(before: HostState, name: str, timeout: float = 5.0) -> list[str]:
    """Leftovers after giving asynchronous kernel cleanup (netns, veth) a moment."""
    deadline = time.monotonic() + timeout
    while True:
        problems = leftovers(before, name)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.05)


def command(name: str) -> list[str]:
    """How tests run one of the project's commands: this interpreter, this checkout."""
    return [sys.executable, "-m", f"overlay_boot.cli.{name}"]


def run_command(
    name: str, *args: str, timeout: float = 60, **kwargs
) -> subprocess.CompletedProcess:
    env = dict(os.environ, OVERLAY_BOOT_NO_SYSTEMD="1", PYTHONPATH=str(REPO))
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [*command(name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=kwargs.pop("cwd", str(REPO)),
        **kwargs,
    )
