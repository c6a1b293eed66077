"""Partition tables read by overlay_boot.partitions, checked against fdisk's own reading."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overlay_boot.partitions import PartitionError, find_partition, read_table

MiB = 1 << 20


def make_image(path: Path, script: str, size: int = 64 * MiB, sector_size: int = 512) -> Path:
    """An image partitioned by sfdisk (a script), or by fdisk (keystrokes) for 4 KiB sectors,
    which this sfdisk cannot do."""
    with open(path, "wb") as f:
        f.truncate(size)
    if sector_size == 512:
        cmd = ["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(path)]
    else:
        cmd = ["fdisk", "-b", str(sector_size), str(path)]
    subprocess.run(cmd, input=script, text=True, check=True, capture_output=True)
    return path


def fdisk_view(path: Path, sector_size: int = 512) -> dict[int, tuple[int, int]]:
    """{number: (offset, size)} as fdisk numbers and places the partitions."""
    out = subprocess.run(["fdisk", "-b", str(sector_size), "-l", "-o", "Device,Start,Sectors",
                          str(path)], check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        if line.startswith(str(path)):
            device, start, count = line.split()
            found[int(device[len(str(path)):])] = (int(start) * sector_size,
                                                   int(count) * sector_size)
    return found


def our_view(path: Path) -> dict[int, tuple[int, int]]:
    with open(path, "rb") as f:
        table = read_table(f)
    assert table is not None
    return {p.number: (p.offset, p.size) for p in table.partitions}


CASES = {
    "dos-two": ("label: dos\n1M,20M,L\n,,L\n", 512, "dos"),
    "dos-gap": ("label: dos\n1M,8M,L\n9M,8M,0\n17M,8M,L\n", 512, "dos"),
    "dos-logical": ("label: dos\n1M,8M,L\n,,E\n,8M,L\n,8M,83\n,,c\n", 512, "dos"),
    "gpt-two": ("label: gpt\n1M,20M,L\n,,L\n", 512, "gpt"),
    "gpt-4k": ("g\nn\n1\n\n+20M\nn\n3\n\n\nw\n", 4096, "gpt"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_numbers_and_places_as_sfdisk(tmp_path: Path, case: str) -> None:
    script, sector_size, kind = CASES[case]
    image = make_image(tmp_path / "d.img", script, sector_size=sector_size)
    if case == "dos-gap":  # sfdisk writes slot 2 with type 0; clear it to leave a hole
        with open(image, "r+b") as f:
            f.seek(446 + 16)
            f.write(bytes(16))
    expected = fdisk_view(image, sector_size)
    with open(image, "rb") as f:
        table = read_table(f)
    assert table is not None and table.kind == kind and table.sector_size == sector_size
    got = {p.number: (p.offset, p.size) for p in table.partitions}
    assert got == expected
    if case == "dos-gap":
        assert sorted(got) == [1, 3]
    if case == "gpt-4k":
        assert sorted(got) == [1, 3]
    if case == "dos-logical":
        assert sorted(got) == [1, 2, 5, 6, 7]
        assert table.get(2).extended
        with pytest.raises(PartitionError, match="extended"):
            find_partition(image, 2)


def test_gpt_with_damaged_primary_header_uses_the_backup(tmp_path: Path) -> None:
    image = make_image(tmp_path / "d.img", "label: gpt\n1M,20M,L\n,,L\n")
    expected = our_view(image)
    with open(image, "r+b") as f:
        f.seek(512 + 24)
        f.write(b"\xff" * 8)  # my_lba: breaks the header checksum
    assert our_view(image) == expected


def test_gpt_without_a_usable_header_is_an_error(tmp_path: Path) -> None:
    image = make_image(tmp_path / "d.img", "label: gpt\n1M,20M,L\n")
    with open(image, "r+b") as f:
        f.seek(512)
        f.write(bytes(512))
        f.seek(-512, 2)
        f.write(bytes(512))
    with pytest.raises(PartitionError, match="no usable GPT"), open(image, "rb") as f:
        read_table(f)


def test_a_filesystem_is_no_partition_table(tmp_path: Path) -> None:
    for mkfs in (["mkfs.vfat", "-C"], ["mkfs.ext4", "-q", "-F"]):
        image = tmp_path / "fs.img"
        image.unlink(missing_ok=True)
        if mkfs[0] == "mkfs.vfat":
            subprocess.run([*mkfs, str(image), "16384"], check=True, capture_output=True)
        else:
            subprocess.run([*mkfs, str(image), "16M"], check=True, capture_output=True)
        with open(image, "rb") as f:
            assert read_table(f) is None, mkfs[0]
        with pytest.raises(PartitionError, match="no partition table"):
            find_partition(image, 1)


def test_missing_and_truncated_partitions(tmp_path: Path) -> None:
    image = make_image(tmp_path / "d.img", "label: dos\n1M,20M,L\n,,L\n")
    with pytest.raises(PartitionError, match=r"no partition 3 .*it has 1, 2"):
        find_partition(image, 3)
    with open(image, "r+b") as f:
        f.truncate(30 * MiB)
    assert find_partition(image, 1).offset == MiB
    with pytest.raises(PartitionError, match="beyond the end"):
        find_partition(image, 2)


def test_short_or_empty_input_has_no_table() -> None:
    assert read_table(io.BytesIO(b"")) is None
    assert read_table(io.BytesIO(b"\0" * 100)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=512, max_size=4096), st.sampled_from([0x00, 0x05, 0xEE, 0x83]))
def test_garbage_never_crashes(data: bytes, kind: int) -> None:
    sector = bytearray(data.ljust(1024, b"\0"))
    sector[510:512] = b"\x55\xaa"
    sector[446] = 0
    sector[446 + 4] = kind
    try:
        read_table(io.BytesIO(bytes(sector)))
    except PartitionError:
        pass
