"""The D-Bus service's view of the running subhosts: records re-read only when changed (real
files and real flocks in a temporary run directory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlay_boot import state
from overlay_boot.bus import service


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(state, "RUN_DIR", tmp_path)
    yield tmp_path


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the records read (state.read), in order."""
    seen: list[str] = []
    real = state.read

    def counting(name: str, **how: int | None) -> state.Runtime | None:
        seen.append(name)
        return real(name, **how)

    monkeypatch.setattr(state, "read", counting)
    return seen


def record(name: str, **changes: object) -> state.Runtime:
    return state.Runtime(name=name, config=f"/etc/overlay-boot/{name}.conf",
                         supervisor_pid=os.getpid(), leader_pid=os.getpid(), root="/",
                         **changes)


def test_unchanged_records_are_not_read_again(run_dir: Path, reads: list[str]) -> None:
    locks = [state.acquire(name) for name in ("a", "b")]
    try:
        for name in ("a", "b"):
            state.write(record(name))
        records = service.RunningRecords()
        assert [r.name for r in records.current()] == ["a", "b"]
        assert sorted(reads) == ["a", "b"]
        reads.clear()
        for _ in range(5):
            assert [r.name for r in records.current()] == ["a", "b"]
        assert reads == []
        # A rewritten record (state.write renames a new file in place) is read again.
        state.write(record("b", state="running"))
        assert [r.state for r in records.current()] == ["starting", "running"]
        assert reads == ["b"]
        reads.clear()
        # A supervisor that dies changes no file: the lock says it.
        os.close(locks.pop())
        assert [r.name for r in records.current()] == ["a"]
        assert reads == []
    finally:
        for fd in locks:
            os.close(fd)


def test_new_and_removed_records_are_seen(run_dir: Path) -> None:
    records = service.RunningRecords()
    assert records.current() == []
    lock = state.acquire("c")
    try:
        assert records.current() == []  # locked, but no record yet
        state.write(record("c"))
        assert [r.name for r in records.current()] == ["c"]
        state.runtime_path("c").unlink()
        assert records.current() == []
    finally:
        os.close(lock)
