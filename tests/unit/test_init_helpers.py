"""Pure helpers of overlay_boot.linux.init: command choice, environment, exit descriptions."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from overlay_boot.linux import init

REPO = Path(__file__).resolve().parents[2]


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_absolute_path_runs_as_script_action(tmp_path: Path) -> None:
    assert init.service_argv("/opt/x/run", "start", str(tmp_path)) == ["/opt/x/run", "start"]


def test_sysv_name_uses_service_when_on_path(tmp_path: Path) -> None:
    empty, bin_ = tmp_path / "empty", tmp_path / "bin"
    empty.mkdir()
    bin_.mkdir()
    service = _executable(bin_ / "service")
    path = f"{empty}:{bin_}"
    assert init.service_argv("ssh", "stop", path) == [str(service), "ssh", "stop"]


def test_sysv_name_without_service_uses_init_d(tmp_path: Path) -> None:
    (tmp_path / "service").write_text("not executable\n")
    (tmp_path / "service").chmod(0o644)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "service").mkdir()  # a directory is no command either
    path = f"{tmp_path}:{tmp_path / 'dir'}"
    assert init.service_argv("ssh", "start", path) == ["/etc/init.d/ssh", "start"]


def test_child_environment_is_clean() -> None:
    env = init.child_environment({"TERM": "vt220", "NOTIFY_SOCKET": "/x", "HOME": "/root"})
    assert env == {"PATH": init.SANE_PATH, "TERM": "vt220"}
    assert init.child_environment({}) == {"PATH": init.SANE_PATH}


def test_describe_exit() -> None:
    assert init.describe_exit(0) == "exit status 0"
    assert init.describe_exit(3 << 8) == "exit status 3"
    assert init.describe_exit(signal.SIGKILL) == "killed by SIGKILL"
    assert init.describe_exit(init.SIGPOWEROFF) == "killed by SIGRTMIN+4"


def test_settings_defaults() -> None:
    s = init.InitSettings(name="x", start=("a",), script=None)
    assert (s.grace, s.log_fd, s.stop_timeout) == (5.0, None, 30.0)


def test_module_imports_nothing_heavy() -> None:
    """PID 1 lives as long as the subhost: no third-party or heavy standard modules."""
    code = (
        "import sys, overlay_boot.linux.init, overlay_boot.linux.pivot\n"
        "heavy = ('pyroute2', 'dbus_next', 'pystemd', 'asyncio', 'subprocess', 'threading',"
        " 'logging', 'argparse', 'dataclasses', 'typing', 'pathlib', 'inspect')\n"
        "print([m for m in sys.modules if m.split('.')[0] in heavy])\n"
    )
    # As PID 1 runs: -I -S (no site: an editable install's finder would load pathlib).
    code = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + code
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
