"""The corpus of bad configuration files: read their headers, set each one up in a temp dir.

Used by tests/unit/test_cases.py, tests/root/test_cases.py and the runtime tests; the header
format is described in tests/cases/README.md.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CASES_DIR = Path(__file__).resolve().parent
DEFAULT_DIRS = ("live", "root", "work")
KEYS = {
    "expect-variable", "expect-message", "no-dirs", "make-file", "make-dir", "mode",
    "dir-mode", "owner", "command-timeout", "setup", "root", "file-name", "describe",
    "make-symlink", "memory-limit-mb",
    # compat/ cases: how 1.6.4 read a config, and what we must make of it
    "compat", "expect", "expect-warning", "invoke-as", "write-file",
}
SETUPS = {"work-on-other-fs", "huge-file"}
HUGE_FILE_BYTES = 2 << 20  # twice config.MAX_SIZE


@dataclass(frozen=True)
class Case:
    path: Path
    headers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    def values(self, key: str) -> list[str]:
        return self.headers.get(key, [])

    def value(self, key: str) -> str | None:
        v = self.values(key)
        return v[-1] if v else None

    @property
    def expect_variable(self) -> str | None:
        """The variable a problem must name; None: any problem (e.g. a binary file)."""
        return self.value("expect-variable")

    @property
    def expect_messages(self) -> list[str]:
        return self.values("expect-message")

    @property
    def needs_root(self) -> bool:
        return "root" in self.headers

    @property
    def memory_limit(self) -> int | None:
        """Bytes of address space the command may use (RLIMIT_AS) in runtime tests."""
        v = self.value("memory-limit-mb")
        return int(v) << 20 if v else None

    @property
    def expected_values(self) -> dict[str, str]:
        """``## expect VAR VALUE``: what 1.6.4 made of VAR (``@BASE@`` is the case's
        directory); VAR STATUS with VALUE ok: the config loads and passes the host checks."""
        found = {}
        for spec in self.values("expect"):
            var, _, value = spec.partition(" ")
            found[var] = value
        return found

    @property
    def command_timeout(self) -> float | None:
        v = self.value("command-timeout")
        return float(v) if v else None


def parse_headers(data: bytes) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for raw in data.split(b"\n"):
        if not raw.startswith(b"## "):
            continue
        text = raw[3:].decode("utf-8", "surrogateescape").strip()
        key, _, value = text.partition(" ")
        if key not in KEYS:
            raise ValueError(f"unknown case header {key!r}")
        headers.setdefault(key, []).append(value.strip())
    return headers


def load_cases(directory: Path = CASES_DIR) -> list[Case]:
    return [Case(p, parse_headers(p.read_bytes())) for p in sorted(directory.glob("*.conf"))]


@contextmanager
def prepared(case: Case, tmp: Path) -> Iterator[Path]:
    """Set ``case`` up under the empty directory ``tmp``; yield the config file's path.

    Everything made here (mounts included) is undone on exit, even on failure.
    """
    with ExitStack() as stack:
        base = tmp / "base"
        base.mkdir()
        skip = {d for v in case.values("no-dirs") for d in v.split()}
        for d in DEFAULT_DIRS:
            if d not in skip:
                (base / d).mkdir()
        for d in case.values("make-dir"):
            (base / d).mkdir(parents=True)
        for f in case.values("make-file"):
            (base / f).touch()
        for spec in case.values("write-file"):
            path, _, text = spec.partition(" ")
            (base / path).write_text(text.replace("\\n", "\n"))
        for spec in case.values("make-symlink"):
            link, _, target = spec.rpartition(" ")
            (base / link).symlink_to(target)
        name = case.value("file-name") or f"t{secrets.token_hex(3)}.conf"
        conf = base / name
        shutil.copyfile(case.path, conf)
        os.chmod(conf, 0o644)
        if case.value("mode"):
            os.chmod(conf, int(case.value("mode") or "", 8))
        if case.value("owner"):
            os.chown(conf, int(case.value("owner") or ""), -1)
        if case.value("dir-mode"):
            os.chmod(base, int(case.value("dir-mode") or "", 8))
            stack.callback(os.chmod, base, 0o755)
        for setup in case.values("setup"):
            if setup not in SETUPS:
                raise ValueError(f"{case.name}: unknown setup {setup!r}")
            if setup == "work-on-other-fs":
                work = base / "work"
                work.mkdir(exist_ok=True)
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tcase", str(work)],
                               check=True)
                stack.callback(subprocess.run, ["umount", str(work)], check=True)
            elif setup == "huge-file":
                line = b"# " + b"x" * 77 + b"\n"
                with conf.open("ab") as f:
                    f.write(line * (HUGE_FILE_BYTES // len(line) + 1))
        invoke_as = case.value("invoke-as")
        yield base / invoke_as if invoke_as else conf
