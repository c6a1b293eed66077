"""machined.Registration: the busctl call run by posix_spawn, waited for with a deadline
(real processes stand in for busctl; the call itself is tested in the booted box)."""

from __future__ import annotations

import os

import pytest

from overlay_boot import machined


def test_a_call_that_succeeds_registers() -> None:
    registration = machined.Registration.start("x", ["/bin/true"])
    assert registration is not None
    assert registration.finish() is True


def test_a_failed_call_is_reported_with_its_message(capfd: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machined.log, "_debug", True)
    registration = machined.Registration.start("x", ["/bin/sh", "-c", "echo refused >&2; exit 3"])
    assert registration is not None
    assert registration.finish() is False
    assert "not registered with systemd-machined: refused" in capfd.readouterr().err


def test_a_call_that_cannot_start_is_no_registration() -> None:
    assert machined.Registration.start("x", ["/nonexistent/busctl"]) is None


def test_a_call_past_its_deadline_is_killed_and_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machined, "TIMEOUT", -4.8)  # a deadline 0.2 s away
    registration = machined.Registration.start("x", ["/bin/sleep", "30"])
    assert registration is not None
    assert registration.finish() is False  # killed: sleep 30 is not waited for
    with pytest.raises(ChildProcessError):
        os.waitpid(registration.pid, os.WNOHANG)  # reaped
