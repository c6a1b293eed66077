"""CAPABILITIES=: parsing, the default kept set, and what the unit drop-in says about them."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from overlay_boot import capabilities as caps
from overlay_boot.config import Config, Share, load_config
from overlay_boot.errors import ConfigError
from overlay_boot.generator import (
    STOP_SECONDS_PER_SERVICE,
    UNIT_DROPPED_CAPABILITIES,
    service_lines,
)
from overlay_boot.linux import confine, init
from overlay_boot.proc import run_command


def test_names_follow_the_kernel_numbering() -> None:
    assert caps.NUMBERS["chown"] == 0 and caps.NUMBERS["sys_admin"] == 21
    assert caps.NUMBERS["mknod"] == 27 and caps.NUMBERS["checkpoint_restore"] == 40


@pytest.mark.parametrize("name", [
    "sys_admin", "sys_module", "sys_rawio", "sys_time", "dac_read_search", "mknod", "syslog",
    "mac_admin", "mac_override", "bpf", "perfmon", "sys_pacct", "wake_alarm", "block_suspend",
    "sys_ptrace", "sys_boot", "ipc_lock", "audit_control", "audit_read"])
def test_default_drops_what_reaches_the_host(name: str) -> None:
    assert name not in caps.DEFAULT_KEPT
    assert not caps.Grant().mask(40) >> caps.NUMBERS[name] & 1


@pytest.mark.parametrize("name", ["setuid", "setgid", "chown", "net_bind_service",
                                  "sys_chroot", "net_admin", "kill", "dac_override"])
def test_default_keeps_what_a_debian_system_needs(name: str) -> None:
    assert caps.Grant().mask(40) >> caps.NUMBERS[name] & 1


def test_newer_kernel_capabilities_are_dropped_unless_all() -> None:
    assert caps.Grant().mask(45) >> 41 == 0
    assert caps.Grant(everything=True).mask(45) == (1 << 46) - 1


@pytest.mark.parametrize("text, names", [
    ("sys_ptrace", {"sys_ptrace"}),
    ("CAP_SYS_PTRACE,cap_mknod", {"sys_ptrace", "mknod"}),
    ("  Sys_Nice   ipc_lock ", {"sys_nice", "ipc_lock"}),
])
def test_parse(text: str, names: set[str]) -> None:
    grant, problem = caps.parse(text)
    assert problem is None and grant.names == names and not grant.everything


def test_parse_all_and_its_misuse() -> None:
    assert caps.parse("ALL") == (caps.Grant(everything=True), None)
    assert caps.parse("all sys_ptrace")[1] == "'all' must be the only word"
    grant, problem = caps.parse("sys_ptrace fly cap_nope")
    assert problem is not None and "fly, cap_nope" in problem


def test_added_and_kernel_interfaces() -> None:
    grant = caps.parse("sys_ptrace chown")[0]
    assert grant.added == ("sys_ptrace",)  # chown is kept anyway
    assert not grant.kernel_interfaces_writable
    assert caps.parse("sys_admin")[0].kernel_interfaces_writable


def _write(tmp_path: Path, text: str) -> Path:
    for sub in ("live", "root", "work"):
        (tmp_path / sub).mkdir(exist_ok=True)
    conf = tmp_path / "sub.conf"
    conf.write_text(f"BASE=.\n{text}")
    return conf


def test_config_reads_capabilities(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "CAPABILITIES=sys_ptrace\n"), run=None)
    assert config.capabilities == caps.Grant(frozenset({"sys_ptrace"}))
    assert load_config(_write(tmp_path, ""), run=None).capabilities == caps.Grant()


@pytest.mark.parametrize("value, message", [
    ("fly", "CAPABILITIES: unknown capability fly"),
    ("!echo all", "CAPABILITIES: CAPABILITIES is never a command"),
])
def test_config_refuses_bad_capabilities(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, f"CAPABILITIES={value}\n"), run=run_command)
    assert f"sub.conf:2: {message}" in str(err.value)


def _config(**kw) -> Config:
    fields = {"path": Path("/x/sub.conf"), "name": "sub", "base": Path("/x"),
              "live": Path("/x/live"), "upper": Path("/x/root"), "work": Path("/x/work"),
              "lower": (Path("/"),)}
    fields.update(kw)
    return Config(**fields)


def test_unit_lines_for_grants() -> None:
    assert service_lines(_config()) == []
    # not taken by the unit: nothing to give back there
    assert service_lines(_config(capabilities=caps.parse("sys_ptrace mknod")[0])) == []
    assert service_lines(_config(capabilities=caps.parse("sys_time sys_ptrace")[0])) == [
        "CapabilityBoundingSet=CAP_SYS_TIME", "SystemCallFilter=", "ProtectClock=no"]
    assert service_lines(_config(capabilities=caps.parse("sys_admin")[0])) == [
        "SystemCallFilter="]
    everything = service_lines(_config(capabilities=caps.Grant(everything=True)))
    assert everything[0].startswith("CapabilityBoundingSet=CAP_SYS_MODULE CAP_SYS_TIME ")
    assert everything[1:] == ["SystemCallFilter=", "SystemCallErrorNumber=", "ProtectClock=no",
                              "DevicePolicy=auto", "DeviceAllow=", "RestrictRealtime=no"]


def test_the_unit_drops_what_the_generator_gives_back() -> None:
    unit = (Path(__file__).resolve().parents[2] / "units/overlay-boot@.service.in").read_text()
    logical = unit.replace("\\\n", " ")
    line = next(x for x in logical.splitlines() if x.startswith("CapabilityBoundingSet=~"))
    dropped = {w.lower().removeprefix("cap_") for w in line.split("~", 1)[1].split()}
    assert dropped == set(UNIT_DROPPED_CAPABILITIES)


def test_unit_lines_for_device_shares_and_slow_stops() -> None:
    config = _config(shares=(Share(Path("/dev/net/tun"), Path("/dev/net/tun")),
                             Share(Path("/srv/data"), Path("/data"))),
                     start=tuple(f"s{i}" for i in range(5)))
    assert service_lines(config) == ["TimeoutStopSec=165s", "DeviceAllow=/dev/net/tun rw"]
    assert STOP_SECONDS_PER_SERVICE == init.STOP_TIMEOUT


def test_keyring_filter_program_shape() -> None:
    program = confine.keyring_filter()
    insns = [struct.unpack("HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    assert insns[-1] == (0x06, 0, 0, 0x00050000 | confine.KEYRING_ERRNO)  # the final deny
    assert insns[-2] == (0x06, 0, 0, 0x7FFF0000)  # an unknown architecture: allowed
    denied = {k for code, jt, _, k in insns if code == 0x15 and jt and
              insns[insns.index((code, jt, 0, k)) + jt + 1] == insns[-1]}
    assert {248, 249, 250, 286, 287, 288, 217, 218, 219, 309, 310, 311} <= denied
