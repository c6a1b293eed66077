"""Build the Debian package the way CI does: `make deb` in a clean clone (committed files only).

Shared by tests/unit/test_packaging.py (lintian, contents) and tests/system/test_deb.py
(install, run, purge in a booted systemd).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# 1.6.4's /etc/subhosts.conf: shipping the same bytes lets the conffile upgrade without a prompt
SUBHOSTS_CONF_1_6_4_MD5 = "b8ac8a84c18229ac860857de42f945b0"


def build_deb(dest: Path, commit: str | None = None) -> Path:
    """Clone the repository's HEAD (or COMMIT) into DEST/src, `make deb DEBDIR=DEST`; the
    .deb's path."""
    clone = dest / "src"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True)
    if commit is not None:
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    # Not the calling make's flags (`make check` runs the tests): a clean build.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "-C", str(clone), "deb", f"DEBDIR={dest}"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, f"make deb failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    debs = sorted(dest.glob("overlay-boot_*_all.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def package_commands() -> list[str]:
    """The /usr/sbin commands the package must ship: one per overlay_boot/cli entry module."""
    commands = ["overlay-boot", "overlay-stop", "overlay-go", "overlay-diskfile"]
    if (REPO / "overlay_boot/cli/share.py").exists():  # overlay-share is coming
        commands.append("overlay-share")
    commands += ["overlay-diff", "overlay-reset"]
    return commands
