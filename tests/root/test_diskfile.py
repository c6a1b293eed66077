"""overlay-diskfile on real images, real loop devices and real mounts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.leaks import run_command

pytestmark = pytest.mark.root

MiB = 1 << 20


@dataclass
class Sandbox:
    """A BASE directory with images in it; remembers images to check for loop leaks."""

    base: Path
    images: list[Path] = field(default_factory=list)

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run_command("diskfile", *args, cwd=str(self.base),
                           env={"CONFIG": str(self.base / "t.conf"), **(env or {})})

    def filesystem(self, name: str, markers: dict[str, str], size: int = 16 * MiB) -> Path:
        """An ext4 filesystem image holding the given files (made without mounting)."""
        tree = self.base / f"{name}.tree"
        for rel, text in markers.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text)
        image = self.base / name
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image),
                        str(size // 1024)], check=True, capture_output=True)
        self.images.append(image)
        return image

    def disk(self, name: str, label: str, filesystems: list[Path],
             extra: str = "") -> Path:
        """A partitioned image whose partitions 1, 2, … hold the given filesystem images."""
        image = self.base / name
        with open(image, "wb") as f:
            f.truncate(sum(fs.stat().st_size for fs in filesystems) + 4 * MiB)
        script = f"label: {label}\n" + "".join(
            f"size={fs.stat().st_size // 512},type=L\n" for fs in filesystems) + extra
        subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image)],
                       input=script, text=True, check=True, capture_output=True)
        out = subprocess.run(["sfdisk", "-d", str(image)], check=True, capture_output=True,
                             text=True).stdout
        starts = [int(line.split("start=")[1].split(",")[0]) for line in out.splitlines()
                  if line.startswith(str(image))]
        with open(image, "r+b") as f:
            for fs, start in zip(filesystems, starts, strict=False):
                f.seek(start * 512)
                f.write(fs.read_bytes())
        self.images.append(image)
        return image

    def mounts_on(self, path: Path) -> int:
        target = os.path.realpath(path)
        return sum(1 for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if line.split()[4] == target)


def _mounts_below(base: Path) -> list[str]:
    prefix = os.path.realpath(base) + "/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]


def _loops_of(image: Path, wait: float = 5.0) -> str:
    """Loop devices still attached to the image, after giving the kernel time to release
    them: an auto-clearing loop device is detached asynchronously after the unmount."""
    deadline = time.monotonic() + wait
    while True:
        found = subprocess.run(["losetup", "-j", str(image)], capture_output=True,
                               text=True).stdout.strip()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(tmp_path)
    try:
        yield sandbox
    finally:
        problems = []
        for mount in reversed(_mounts_below(tmp_path)):
            done = subprocess.run(["umount", mount], capture_output=True, text=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", mount], capture_output=True)
        for image in sandbox.images:
            leftover = _loops_of(image)
            if leftover:
                problems.append(f"loop device still attached: {leftover}")
                for line in leftover.splitlines():
                    subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True)
        assert not _mounts_below(tmp_path)
        assert not problems, problems


@pytest.fixture
def two_parts(box: Sandbox) -> tuple[Sandbox, Path]:
    one = box.filesystem("one.fs", {"marker": "partition one\n"})
    two = box.filesystem("two.fs", {"marker": "partition two\n", "upper/data": "upper\n",
                                    "work/.keep": ""})
    return box, box.disk("disk.img", "dos", [one, two])


def test_partitions_of_an_mbr_image(two_parts: tuple[Sandbox, Path]) -> None:
    box, _ = two_parts
    (box.base / "mnt").mkdir()
    (box.base / "mnt2").mkdir()

    done = box.run("mnt/", "disk.img", "1")
    assert (done.returncode, done.stdout, done.stderr) == (0, "mnt/\n", "")
    assert (box.base / "mnt/marker").read_text() == "partition one\n"

    done = box.run("mnt2", "disk.img", "2")
    assert (done.returncode, done.stdout) == (0, "mnt2\n"), done.stderr
    assert (box.base / "mnt2/marker").read_text() == "partition two\n"

    # mounted by mount(8) with -o loop: the loop device is released with the filesystem
    subprocess.run(["umount", str(box.base / "mnt")], check=True)
    subprocess.run(["umount", str(box.base / "mnt2")], check=True)
    assert _loops_of(box.base / "disk.img") == ""


def test_subpath_for_upper_is_writable_and_mounted_only_once(
        two_parts: tuple[Sandbox, Path]) -> None:
    box, _ = two_parts
    mnt = box.base / "mnt"
    mnt.mkdir()
    for _ in range(2):
        done = box.run("mnt/upper", "disk.img", "2")
        assert (done.returncode, done.stdout) == (0, "mnt/upper\n"), done.stderr
        assert box.mounts_on(mnt) == 1
    assert (mnt / "upper/data").read_text() == "upper\n"
    assert (mnt / "work").is_dir()
    (mnt / "upper/new").write_text("written\n")  # UPPER needs read-write
    # the 1.6.4 example of a deeper path still mounts on the first component
    done = box.run("mnt/some/path", "disk.img", "2")
    assert (done.returncode, done.stdout) == (0, "mnt/some/path\n"), done.stderr
    assert box.mounts_on(mnt) == 1
    assert box.mounts_on(mnt / "some") == 0


def test_through_the_shell_as_overlay_boot_runs_it(
        two_parts: tuple[Sandbox, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from overlay_boot.proc import run_command as run_bang

    box, _ = two_parts
    (box.base / "lower").mkdir()
    script = box.base / "bin/overlay-diskfile"
    script.parent.mkdir()
    repo = Path(__file__).resolve().parents[2]
    script.write_text(f"#!/bin/sh\nPYTHONPATH={repo} exec {sys.executable} "
                      "-m overlay_boot.cli.diskfile \"$@\"\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ.get('PATH', '')}")
    value = run_bang("overlay-diskfile lower/ disk.img 1", config=box.base / "t.conf",
                     cwd=str(box.base), timeout=30)
    assert value == "lower/"
    assert (box.base / "lower/marker").read_text() == "partition one\n"


def test_gpt_image(box: Sandbox) -> None:
    one = box.filesystem("one.fs", {"marker": "gpt one\n"})
    two = box.filesystem("two.fs", {"marker": "gpt two\n"})
    box.disk("gpt.img", "gpt", [one, two])
    (box.base / "mnt").mkdir()
    done = box.run("mnt/", "gpt.img", "2")
    assert (done.returncode, done.stdout) == (0, "mnt/\n"), done.stderr
    assert (box.base / "mnt/marker").read_text() == "gpt two\n"


def test_logical_partition(box: Sandbox) -> None:
    one = box.filesystem("one.fs", {"marker": "primary\n"})
    five = box.filesystem("five.fs", {"marker": "logical five\n"})
    image = box.base / "ext.img"
    with open(image, "wb") as f:
        f.truncate(40 * MiB)
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image)],
                   input="label: dos\n1M,16M,L\n,,E\n,16M,L\n", text=True, check=True,
                   capture_output=True)
    box.images.append(image)
    start5 = next(int(line.split("start=")[1].split(",")[0]) for line in subprocess.run(
        ["sfdisk", "-d", str(image)], capture_output=True, text=True, check=True
    ).stdout.splitlines() if line.startswith(f"{image}5 "))
    with open(image, "r+b") as f:
        f.seek(MiB)
        f.write(one.read_bytes())
        f.seek(start5 * 512)
        f.write(five.read_bytes())
    (box.base / "mnt").mkdir()
    done = box.run("mnt/", "ext.img", "5")
    assert (done.returncode, done.stdout) == (0, "mnt/\n"), done.stderr
    assert (box.base / "mnt/marker").read_text() == "logical five\n"


def test_whole_image_and_absolute_path(box: Sandbox) -> None:
    box.filesystem("fs.img", {"marker": "whole\n", "sub/x": "x\n"})
    mnt = box.base / "abs"
    mnt.mkdir()
    for _ in range(2):
        done = box.run(f"{mnt}/sub", "fs.img")
        assert (done.returncode, done.stdout) == (0, f"{mnt}/sub\n"), done.stderr
        assert box.mounts_on(mnt) == 1
    assert (mnt / "marker").read_text() == "whole\n"
    assert (mnt / "sub/x").read_text() == "x\n"


def test_absolute_path_never_hides_a_non_empty_directory(box: Sandbox) -> None:
    box.filesystem("fs.img", {"marker": "whole\n"})
    (box.base / "keep").write_text("host file\n")
    done = box.run(f"{box.base}/typo/sub", "fs.img")
    assert done.returncode == 1
    assert "fs.img" in done.stderr and "not an empty directory" in done.stderr
    assert box.mounts_on(box.base) == 0


def test_not_run_by_overlay_boot_prints_without_mounting(two_parts: tuple[Sandbox, Path]) -> None:
    box, _ = two_parts
    (box.base / "mnt").mkdir()
    done = box.run("mnt/", "disk.img", "1", env={"ACTION": "overlay-stop"})
    assert (done.returncode, done.stdout) == (0, "mnt/\n")
    assert box.mounts_on(box.base / "mnt") == 0
    done = box.run("mnt/")  # no image: the path as it is
    assert (done.returncode, done.stdout) == (0, "mnt/\n")


def test_errors(two_parts: tuple[Sandbox, Path]) -> None:
    box, _ = two_parts
    box.filesystem("fs.img", {"marker": "whole\n"})
    (box.base / "mnt").mkdir()

    def fails(*args: str, status: int = 1) -> str:
        done = box.run(*args)
        assert done.returncode == status, (args, done)
        assert done.stdout == ""
        assert box.mounts_on(box.base / "mnt") == 0
        return done.stderr

    assert "disk.img partition 3: no partition 3" in fails("mnt/", "disk.img", "3")
    assert "missing.img" in fails("mnt/", "missing.img", "1")
    assert "fs.img partition 1: it has no partition table" in fails("mnt/", "fs.img", "1")
    assert "partition number" in fails("mnt/", "disk.img")  # mount fails on the table
    assert "nodir" in fails("nodir/", "disk.img", "1")
    assert "partition" in fails("mnt/", "disk.img", "0", status=64)
    assert "usage" in fails("mnt/", "disk.img", "1", "extra", status=64)
    assert "usage" in box.run("--help").stdout

    # something else already on the mount point is not mounted over
    assert box.run("mnt/", "disk.img", "1").returncode == 0
    done = box.run("mnt/", "disk.img", "2")
    assert done.returncode == 1 and "disk.img partition 2" in done.stderr
    assert "already mounted" in done.stderr
    assert box.mounts_on(box.base / "mnt") == 1
