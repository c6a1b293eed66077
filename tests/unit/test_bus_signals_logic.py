"""What the D-Bus service's signals are made of, without a bus: the inotify watch of the run
directory (the real kernel's), the dispatch table made from the declared interfaces, the
check of a record's values against their D-Bus types, and records that are no records."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlay_boot import state
from overlay_boot.bus import service, watch


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setattr(state, "RUN_DIR", run)
    yield run


def record(name: str, **changes: object) -> state.Runtime:
    fields: dict = {"name": name, "config": f"/etc/overlay-boot/{name}.conf",
                    "supervisor_pid": os.getpid(), "leader_pid": os.getpid(), "root": "/"}
    return state.Runtime(**{**fields, **changes})


def test_the_watch_wakes_for_records_and_locks_only(run_dir: Path) -> None:
    watcher = watch.DirectoryWatch(run_dir)
    try:
        assert watcher.watch()
        assert not watcher.changed()
        (run_dir / "a.ctl").write_text("")  # a control socket's name: not ours to follow
        assert not watcher.changed()
        state.write(record("a"))  # NAME.tmp renamed to NAME.json
        assert watcher.changed()
        assert not watcher.changed()  # drained
        lock = state.acquire("b")
        watcher.changed()
        os.close(lock)  # a supervisor that ends, whatever it left
        assert watcher.changed()
        state.runtime_path("a").unlink()
        assert watcher.changed()
        for path in run_dir.iterdir():
            path.unlink()
        run_dir.rmdir()
        assert watcher.changed() and not watcher.watching
        assert not watcher.watch()  # gone: nothing to watch until it is made again
        run_dir.mkdir()
        assert watcher.watch()
    finally:
        watcher.close()


def test_events_are_parsed_with_their_names() -> None:
    def event(mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name))
        return struct.pack("iIII", 1, mask, 0, len(padded)) + padded

    data = event(watch.IN_MOVED_TO, b"web.json") + event(watch.IN_IGNORED, b"")
    assert watch.events(data) == [(watch.IN_MOVED_TO, "web.json"), (watch.IN_IGNORED, "")]


def test_the_dispatch_table_takes_the_declared_signatures() -> None:
    async def handler(*_args: object) -> service.Reply:
        return "", [], []

    names = ("Stop", "Share", "Unshare", "OpenShell", "Run", "Diff")
    table = service.dispatch_table(service.Subhost(None), dict.fromkeys(names, handler))
    run = table[(service.SUBHOST_IFACE, "Run")]
    assert run.arg_types == ("as", "a{ss}", "h", "h", "h")
    assert (run.in_signature, run.out_signature) == ("asa{ss}hhh", "i")
    assert table[(service.SUBHOST_IFACE, "OpenShell")].out_signature == "hu"
    with pytest.raises(ValueError, match="not the declared methods"):
        service.dispatch_table(service.Subhost(None), dict.fromkeys(names[1:], handler))


def test_values_that_do_not_fit_their_types_are_refused() -> None:
    good = service.Subhost(record("web", interfaces=("web0",), services=(("ssh", "started"),)))
    values = good.snapshot()
    assert values["Interfaces"].value == [["eth0", "web0"]]
    assert values["Services"].signature == "a(ss)"
    for bad, field in ((record("web", leader_pid=-1), "Leader"),
                       (record("web", root="/\udc80"), "RootDirectory"),
                       (record("web", services=(("ssh", 5),)), "Services")):
        with pytest.raises(ValueError, match=f"^{field}: "):
            service.Subhost(bad).snapshot()


def test_records_that_are_no_records(run_dir: Path) -> None:
    locks = [state.acquire(name) for name in ("link", "big", "list", "other", "good")]
    try:
        state.write(record("good"))
        elsewhere = run_dir.parent / "elsewhere.json"
        state.write(record("link"))
        state.runtime_path("link").rename(elsewhere)
        state.runtime_path("link").symlink_to(elsewhere)
        state.runtime_path("big").write_text('{"name": "big", "x": "' + "x" * state.MAX_RECORD
                                              + '"}')
        state.runtime_path("list").write_text("[1]")
        state.write(record("someone-else"))
        state.runtime_path("someone-else").rename(state.runtime_path("other"))
        for name in ("link", "big", "list"):
            assert state.read(name) is None, name
        assert [r.name for r in service.RunningRecords().current()] == ["good"]
    finally:
        for fd in locks:
            os.close(fd)
