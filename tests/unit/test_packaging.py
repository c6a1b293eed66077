"""The Debian package (packaging/debian): built by `make deb` from a clean clone, lintian-clean,
with the layout, relationships and maintainer scripts the upgrade from 1.6.4 needs.

Installing and running it is tests/system/test_deb.py (in a booted systemd)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from tests.debbuild import REPO, SUBHOSTS_CONF_1_6_4_MD5, build_deb, package_commands


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the .deb, its extracted tree with the control files in DEBIAN/)."""
    out = tmp_path_factory.mktemp("deb")
    deb = build_deb(out)
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    return deb, tree


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_lintian_reports_no_errors_or_warnings(built: tuple[Path, Path]) -> None:
    deb, _ = built
    changes = sorted(deb.parent.glob("overlay-boot_*.changes"))
    assert len(changes) == 1
    r = subprocess.run(["lintian", "--pedantic", "--display-info", str(changes[0])],
                       capture_output=True, text=True)
    bad = [line for line in r.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert bad == [], r.stdout
    assert r.returncode == 0, r.stdout + r.stderr


def test_lintian_overrides_are_justified() -> None:
    for path in (REPO / "packaging/debian").rglob("*lintian-overrides"):
        previous = ""
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert previous.startswith("#"), f"{path}: override without a comment: {line}"
            previous = line


def test_control_fields(built: tuple[Path, Path]) -> None:
    deb, _ = built
    assert field(deb, "Package") == "overlay-boot"
    assert field(deb, "Architecture") == "all"
    version = field(deb, "Version")
    # a newer version of Debian's own overlay-boot 1.6.4 package: apt upgrades it
    subprocess.run(["dpkg", "--compare-versions", version, "gt", "1.6.4-1"], check=True)
    depends = {d.strip() for d in field(deb, "Depends").split(",")}
    for dep in ("python3-pyroute2 (>= 0.7.2)", "python3-dbus-next (>= 0.2.3)",
                "python3-pystemd (>= 0.11)", "iproute2", "mount"):
        assert dep in depends
    assert any(d.startswith("python3:any (>= 3.11") for d in depends), depends
    # replacing a package of the same name needs no Conflicts/Replaces/Breaks on itself
    for name in ("Conflicts", "Replaces", "Breaks", "Provides"):
        assert "overlay-boot" not in field(deb, name)


def test_installed_layout(built: tuple[Path, Path]) -> None:
    _, tree = built
    expected = [
        "usr/lib/systemd/system/overlay-boot@.service",
        "usr/lib/systemd/system/overlay-boot-cleanup@.service",
        "usr/lib/systemd/system/overlay-boot-net.socket",
        "usr/lib/systemd/system/overlay-boot-net.service",
        "usr/lib/systemd/system-generators/overlay-boot-generator",
        "usr/lib/python3/dist-packages/overlay_boot/__init__.py",
        "usr/lib/python3/dist-packages/overlay_boot/cli/boot.py",
        "usr/share/man/man5/overlay-boot.conf.5.gz",
        "etc/overlay-boot/example.conf.sample",
        "etc/subhosts.conf",
        "usr/share/doc/overlay-boot/copyright",
        "usr/share/doc/overlay-boot/changelog.Debian.gz",
    ]
    for command in package_commands():
        expected += [f"usr/sbin/{command}", f"usr/share/man/man8/{command}.8.gz"]
        if (REPO / "completions/bash").is_dir():
            expected.append(f"usr/share/bash-completion/completions/{command}")
    expected += [f"usr/share/dbus-1/system.d/{p.name}" for p in REPO.glob("dbus/*.conf")]
    missing = [p for p in expected if not (tree / p).exists()]
    assert missing == []
    assert not list(tree.rglob("__pycache__")), "bytecode is made by py3compile at install time"
    assert not [p for p in tree.rglob("*") if "/usr/local" in str(p)]
    for command in package_commands():
        path = tree / "usr/sbin" / command
        assert path.stat().st_mode & 0o777 == 0o755
        if command == "overlay-go":  # no site (its start is timed): it adds PYDIR itself
            assert path.read_text().startswith(
                '#!/usr/bin/python3 -IS\nimport sys\n'
                'sys.path.append("/usr/lib/python3/dist-packages")\n')
        else:
            assert path.read_text().startswith("#!/usr/bin/python3 -I\n")
    generator = tree / "usr/lib/systemd/system-generators/overlay-boot-generator"
    # -IS (one word: the kernel passes the rest of a #! line as one argument): -S, no site
    # module at every boot; the shim puts the package's directory on the path
    assert generator.read_text().startswith("#!/usr/bin/python3 -IS\n")
    assert 'PYDIR = "/usr/lib/python3/dist-packages"' in generator.read_text()
    unit = (tree / "usr/lib/systemd/system/overlay-boot@.service").read_text()
    assert "ExecStart=/usr/sbin/overlay-boot " in unit
    assert not re.search(r"@[A-Z]+@", unit)  # all placeholders substituted
    net_unit = (tree / "usr/lib/systemd/system/overlay-boot-net.service").read_text()
    assert "ExecStart=/usr/bin/python3 -I -m overlay_boot.netd\n" in net_unit
    assert "Wants=overlay-boot-net.socket" in unit  # the template pulls the socket in


def test_conffiles_and_etc(built: tuple[Path, Path]) -> None:
    _, tree = built
    assert (tree / "DEBIAN/conffiles").read_text().split() == [
        "/etc/apt/apt.conf.d/50overlay-boot", "/etc/init.d/overlay-boot",
        "/etc/overlay-boot/example.conf.sample",
        "/etc/subhosts.conf"]
    # The same bytes as 1.6.4's conffile: an admin's edited boot list is kept without a prompt.
    subhosts = (tree / "etc/subhosts.conf").read_bytes()
    assert hashlib.md5(subhosts).hexdigest() == SUBHOSTS_CONF_1_6_4_MD5
    # The example is inert: not *.conf (the generator reads those), and all comments.
    example = tree / "etc/overlay-boot/example.conf.sample"
    assert not example.name.endswith(".conf")
    assert all(not line or line.startswith("#") for line in example.read_text().splitlines())
    assert not list((tree / "etc/overlay-boot").glob("*.conf"))


def test_maintainer_scripts(built: tuple[Path, Path]) -> None:
    _, tree = built
    scripts = {name: (tree / "DEBIAN" / name).read_text()
               for name in ("preinst", "postinst", "prerm", "postrm")}
    # 1.6.4's init script is an obsolete conffile: removed the Debian way, on every path
    for name in scripts:
        assert "dpkg-maintscript-helper rm_conffile /etc/init.d/subhosts 2.0.0-1\\~ overlay-boot" \
            in scripts[name]
    assert "update-rc.d subhosts remove" in scripts["postinst"]
    assert "daemon-reload" in scripts["postinst"] and "daemon-reload" in scripts["postrm"]
    # nothing starts, restarts or stops a unit on upgrade: running subhosts stay up
    everything = "\n".join(scripts.values())
    assert not re.search(r"systemctl\s+(--\S+\s+)*(start|restart|stop|try-restart)", everything)
    assert "deb-systemd-invoke" not in everything and "invoke-rc.d" not in everything
    assert 'if [ "$1" = remove ]; then' in scripts["prerm"]  # stops subhosts on removal only
    for name, text in scripts.items():
        subprocess.run(["sh", "-n", str(tree / "DEBIAN" / name)], check=True)
        assert text.startswith("#!/bin/sh\nset -e\n"), name


def test_manual_pages_render_cleanly(built: tuple[Path, Path]) -> None:
    _, tree = built
    pages = sorted((tree / "usr/share/man").rglob("*.gz"))
    assert len(pages) == len(package_commands()) + 1
    for page in pages:
        r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", str(page)],
                           capture_output=True, text=True, env={"MANWIDTH": "80",
                                                                "LC_ALL": "C.UTF-8",
                                                                "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0 and r.stderr == "", f"{page.name}: {r.stderr}"
        assert "SYNOPSIS" in r.stdout and "SEE ALSO" in r.stdout
